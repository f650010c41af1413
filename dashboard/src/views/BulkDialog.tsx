import { memo, useEffect, useRef, useState } from 'react';
import type { ApiClient, FleetStore } from '../contracts.js';
import { runBulk, type BulkKind, type BulkResult } from './bulk.js';
import { Dialog } from './Dialog.js';

const TITLES: Record<BulkKind, (n: number) => string> = {
  'report-now': (n) => `Ask ${n} ${robots(n)} to report now?`,
  'mark-failed': (n) => `Mark ${n} ${robots(n)} failed?`,
  recover: (n) => `Recover ${n} ${robots(n)}?`,
};
const VERB: Record<BulkKind, string> = { 'report-now': 'Report now', 'mark-failed': 'Mark failed', recover: 'Recover' };

function robots(n: number): string {
  return n === 1 ? 'robot' : 'robots';
}

/**
 * Confirms a bulk action stating the count, then runs it and lists every robot's result as it comes, with progress.
 * The robots are fixed when the dialog opens (live updates do not change what was confirmed). Closing while it runs
 * stops starting new calls.
 */
export function BulkDialog(props: {
  kind: BulkKind;
  robotIds: readonly string[];
  api: ApiClient;
  store: FleetStore;
  onClose: () => void;
}) {
  const { kind, api, store } = props;
  const [robotIds] = useState(() => [...props.robotIds]);
  const [reason, setReason] = useState('');
  const [phase, setPhase] = useState<'confirm' | 'running' | 'done'>('confirm');
  const [results, setResults] = useState<readonly BulkResult[]>([]);
  const pending = useRef<BulkResult[]>([]);
  const frame = useRef<number | null>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(
    () => () => {
      abort.current?.abort();
      if (frame.current !== null) cancelAnimationFrame(frame.current);
    },
    [],
  );

  const flush = () => {
    frame.current = null;
    const batch = pending.current;
    pending.current = [];
    if (batch.length) setResults((current) => [...current, ...batch]);
  };

  const start = async () => {
    const controller = new AbortController();
    abort.current = controller;
    setPhase('running');
    await runBulk(api, kind, robotIds, {
      reason: reason.trim(),
      signal: controller.signal,
      onResult: (batch) => {
        pending.current.push(...batch);
        if (frame.current === null) frame.current = requestAnimationFrame(flush);
      },
    });
    if (controller.signal.aborted) return;
    if (frame.current !== null) cancelAnimationFrame(frame.current);
    flush();
    setPhase('done');
    void store.refresh().catch(() => undefined);
  };

  const needsReason = kind === 'mark-failed';
  const failed = results.filter((r) => !r.ok).length;
  const title = TITLES[kind](robotIds.length);

  return (
    <Dialog title={title} onClose={props.onClose} wide focusKey={phase === 'confirm' ? 'confirm' : 'results'}>
      {phase === 'confirm' ? (
        <form
          onSubmit={(event) => {
            event.preventDefault();
            if (needsReason && !reason.trim()) return;
            void start();
          }}
        >
          <p>
            {VERB[kind]} on {robotIds.length} {robots(robotIds.length)}
            {robotIds.length <= 5 ? `: ${robotIds.join(', ')}` : ` (${robotIds.slice(0, 3).join(', ')} and ${robotIds.length - 3} more)`}.
          </p>
          {kind !== 'report-now' && (
            <label className="field">
              <span>{needsReason ? 'Reason (required, kept in every robot’s history)' : 'Note (optional)'}</span>
              <textarea
                name={needsReason ? 'reason' : 'note'}
                required={needsReason}
                maxLength={500}
                rows={3}
                value={reason}
                data-autofocus
                onChange={(event) => setReason(event.target.value)}
              />
            </label>
          )}
          <div className="dialog-actions">
            <button type="button" data-action="cancel" onClick={props.onClose}>
              Cancel
            </button>
            <button
              type="submit"
              data-action="confirm"
              className={kind === 'mark-failed' ? 'danger' : 'primary'}
              disabled={needsReason && !reason.trim()}
              data-autofocus={kind === 'report-now' ? true : undefined}
            >
              {VERB[kind]} {robotIds.length} {robots(robotIds.length)}
            </button>
          </div>
        </form>
      ) : (
        <>
          <p role="status" className="progress">
            {phase === 'running' ? 'Running: ' : 'Done: '}
            {results.length} of {robotIds.length} answered
            {failed > 0 ? `, ${failed} failed` : ''}.
          </p>
          <progress max={robotIds.length} value={results.length} aria-label="Progress" />
          {failed > 0 && phase === 'done' && (
            <p role="alert" className="error">
              {failed} of {robotIds.length} did not work; see below.
            </p>
          )}
          <ul className="bulk-results" aria-label="Results">
            {results.map((result) => (
              <ResultItem key={result.robotId} result={result} />
            ))}
          </ul>
          <div className="dialog-actions">
            <button type="button" data-action="cancel" data-autofocus onClick={props.onClose}>
              {phase === 'running' ? 'Stop' : 'Close'}
            </button>
          </div>
        </>
      )}
    </Dialog>
  );
}

const ResultItem = memo(function ResultItem(props: { result: BulkResult }) {
  const { result } = props;
  return (
    <li data-testid="bulk-result" data-robot-id={result.robotId} data-ok={String(result.ok)} className={result.ok ? 'ok' : 'failed'}>
      <span className="result-mark">{result.ok ? 'ok' : 'error'}</span> <span className="mono">{result.robotId}</span>{' '}
      <span className="muted">{result.message}</span>
    </li>
  );
});
