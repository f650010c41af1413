import { useVirtualizer } from '@tanstack/react-virtual';
import { memo, useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore, type MouseEvent } from 'react';
import type { DeploymentRobotView, DeploymentView } from '../../../schemas/index.js';
import type { ApiClient, DeploymentAction, FleetStore, Permissions, Route } from '../contracts.js';
import { browserLiveEnvironment } from '../live/browser.js';
import { DeploymentWatch, type DeploymentWatchSnapshot } from '../live/deployment-watch.js';
import { describeFailure } from './bulk.js';
import { useNow } from './clock.js';
import { DeploymentStateBadge, ProgressBar } from './DeploymentsView.js';
import {
  ACTION_VERB,
  actionConfirmation,
  availableActions,
  describeStrategy,
  describeTargets,
  heldByReason,
  holdReasonText,
  isFinal,
  progressOf,
  ROBOT_UPDATE_STATE_OPTIONS,
  sortDeploymentRobots,
} from './deployment-model.js';
import { Dialog } from './Dialog.js';
import { formatDuration, formatTime, parseTime } from './format.js';
import { useKeys } from './keyboard.js';

/** Fixed row height (px) of the robots table: the virtualizer positions rows by index. */
export const DEPLOYMENT_ROW_HEIGHT = 30;

/**
 * One deployment: its state and why, overall and per-batch progress, the robots held back and why, every robot's
 * update with its timings (a virtualized table: a deployment may name 10,000 robots), and the actions its state allows
 * for engineers and admins, each confirmed with what it will do. Kept current by a DeploymentWatch (live RobotUpdate*
 * events of its robots, throttled, and a 5 s fallback) until it is final.
 */
export function DeploymentDetail(props: {
  deploymentId: string;
  api: ApiClient;
  store: FleetStore;
  permissions: Permissions;
  navigate: (route: Route) => void;
}) {
  const { deploymentId, api, store, permissions, navigate } = props;
  const { watch, snapshot } = useDeploymentWatch(deploymentId, api, store);
  const deployment = snapshot.deployment;

  const [dialog, setDialog] = useState<DeploymentAction | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  useKeys({ Escape: () => navigate({ view: 'deployments' }) }, dialog === null);

  const link = (route: Route, href: string) => ({
    href,
    onClick: (event: MouseEvent<HTMLAnchorElement>) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      navigate(route);
    },
  });

  const actions = deployment ? availableActions(deployment, permissions.deploy) : [];

  return (
    <article className="deployment-detail" data-testid="deployment-detail" data-deployment-id={deploymentId} data-state={deployment?.state} aria-labelledby="deployment-title">
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <a {...link({ view: 'deployments' }, '/deployments')}>← Deployments</a>
        <span className="muted small"> (Esc)</span>
      </nav>
      <header className="detail-head">
        <h1 id="deployment-title" className="view-title">
          {deployment ? (
            <>
              {deployment.kind === 'rollback' ? 'Rollback to ' : 'Deploy '}
              <span className="mono">{deployment.release.version}</span>{' '}
            </>
          ) : null}
          <span className="mono small muted">{deploymentId}</span>
        </h1>
        {deployment && (
          <p className="deployment-state-line">
            <DeploymentStateBadge state={deployment.state} />
            {deployment.reason && (
              <span data-testid="deployment-reason" className={deployment.state === 'aborted' ? 'crit-text' : undefined}>
                {deployment.reason}
              </span>
            )}
            {!isFinal(deployment.state) && <span className="muted small"> · kept current live</span>}
          </p>
        )}
        {actions.length > 0 && deployment && (
          <div className="detail-actions" role="toolbar" aria-label="Deployment actions">
            {actions.map((action) => (
              <button
                key={action}
                type="button"
                data-action={`deployment-${action}`}
                className={action === 'cancel' || action === 'rollback' ? 'danger' : undefined}
                onClick={() => setDialog(action)}
              >
                {ACTION_VERB[action]}
              </button>
            ))}
          </div>
        )}
      </header>
      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
      {snapshot.error && (
        <p role="alert" className="error">
          {snapshot.notFound ? `There is no deployment ${deploymentId}.` : `Could not read the deployment: ${snapshot.error}`}
          {!snapshot.notFound && deployment && ' (showing the last answer; retrying)'}
        </p>
      )}
      {!deployment && !snapshot.error && <p className="muted">Loading {deploymentId}…</p>}
      {deployment && (
        <>
          <Overview deployment={deployment} link={link} />
          <Batches deployment={deployment} />
          <HeldRobots robots={deployment.robots} />
          <RobotsTable robots={deployment.robots} navigate={navigate} />
        </>
      )}
      {dialog && deployment && (
        <ActionDialog
          action={dialog}
          deployment={deployment}
          api={api}
          onClose={() => setDialog(null)}
          onDone={(text) => {
            setDialog(null);
            setNotice(text);
            void watch?.refresh();
          }}
        />
      )}
    </article>
  );
}

const NOT_READ: DeploymentWatchSnapshot = { deployment: null, error: null, notFound: false, reads: 0 };

/**
 * The watch lives in an effect (made, started and closed there), so React's StrictMode running effects twice gets a
 * fresh watch each time rather than a closed one.
 */
function useDeploymentWatch(deploymentId: string, api: ApiClient, store: FleetStore): { watch: DeploymentWatch | null; snapshot: DeploymentWatchSnapshot } {
  const [watch, setWatch] = useState<DeploymentWatch | null>(null);
  useEffect(() => {
    const opened = new DeploymentWatch(deploymentId, {
      api,
      onEvents: (listener) => store.onEvents(listener),
      onDeploymentChanges: (listener) => store.onDeploymentChanges(listener),
      clock: browserLiveEnvironment,
      describe: describeFailure,
    });
    setWatch(opened);
    opened.start();
    return () => {
      opened.close();
      setWatch(null);
    };
  }, [api, store, deploymentId]);
  const subscribe = useCallback((listener: () => void) => (watch ? watch.subscribe(listener) : () => undefined), [watch]);
  const getSnapshot = useCallback(() => (watch ? watch.getSnapshot() : NOT_READ), [watch]);
  return { watch, snapshot: useSyncExternalStore(subscribe, getSnapshot, getSnapshot) };
}

type LinkProps = (route: Route, href: string) => { href: string; onClick: (event: MouseEvent<HTMLAnchorElement>) => void };

function Overview(props: { deployment: DeploymentView; link: LinkProps }) {
  const { deployment: d, link } = props;
  const now = useNow();
  const progress = progressOf(d);
  const c = d.counts;
  return (
    <section className="panel" aria-labelledby="overview-title">
      <h2 id="overview-title">Progress</h2>
      <ProgressBar progress={progress} label="Deployment progress" />
      <dl className="facts compact deployment-counts" data-testid="deployment-counts">
        {(
          [
            ['targeted', 'Targeted', c.targeted],
            ['held', 'Held back', c.held],
            ['pending', 'Pending', c.pending],
            ['inProgress', 'In progress', c.inProgress],
            ['succeeded', 'Succeeded', c.succeeded],
            ['failed', 'Failed', c.failed],
            ['rolledBack', 'Rolled back', c.rolledBack],
            ['canceled', 'Canceled', c.canceled],
          ] as const
        ).map(([key, label, value]) => (
          <div key={key}>
            <dt>{label}</dt>
            <dd data-testid={`count-${key}`} className={key === 'failed' && value > 0 ? 'crit-text' : undefined}>
              {value}
            </dd>
          </div>
        ))}
      </dl>
      <dl className="facts">
        <div>
          <dt>Release</dt>
          <dd>
            <span className="mono">{d.release.version}</span>{' '}
            <span className="muted small mono" title={d.release.manifestSha256}>
              manifest {d.release.manifestSha256.slice(0, 12)}…
            </span>
          </dd>
        </div>
        <div>
          <dt>Targets</dt>
          <dd>{describeTargets(d.targets)}</dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>
            {d.createdBy} · {formatTime(d.createdAt, now)} <span className="muted small">(updated {formatTime(d.updatedAt, now)})</span>
          </dd>
        </div>
        {d.parentDeploymentId && (
          <div>
            <dt>Rolls back</dt>
            <dd>
              <a className="mono" {...link({ view: 'deployment', deploymentId: d.parentDeploymentId }, `/deployments/${encodeURIComponent(d.parentDeploymentId)}`)}>
                {d.parentDeploymentId}
              </a>
            </dd>
          </div>
        )}
        {d.rollbackDeploymentId && (
          <div>
            <dt>Rolled back by</dt>
            <dd>
              <a
                className="mono"
                data-testid="rollback-link"
                {...link({ view: 'deployment', deploymentId: d.rollbackDeploymentId }, `/deployments/${encodeURIComponent(d.rollbackDeploymentId)}`)}
              >
                {d.rollbackDeploymentId}
              </a>
            </dd>
          </div>
        )}
        {d.note && (
          <div>
            <dt>Note</dt>
            <dd>{d.note}</dd>
          </div>
        )}
      </dl>
      <p className="muted small">Strategy: {describeStrategy(d.strategy)}.</p>
    </section>
  );
}

function Batches(props: { deployment: DeploymentView }) {
  const { batches } = props.deployment;
  return (
    <section className="panel" aria-labelledby="batches-title">
      <h2 id="batches-title">Batches</h2>
      {batches.length === 0 ? (
        <p className="muted">No batches (every targeted robot was held back).</p>
      ) : (
        <div className="table-wrap">
          <table className="data-table" data-testid="batches-table">
            <thead>
              <tr>
                <th scope="col">Batch</th>
                <th scope="col">Kind</th>
                <th scope="col">State</th>
                <th scope="col">IoT job</th>
                <th scope="col">Done</th>
                <th scope="col">Failures</th>
                <th scope="col">Progress</th>
              </tr>
            </thead>
            <tbody>
              {batches.map((batch) => {
                const done = batch.succeeded + batch.failed;
                return (
                  <tr key={batch.index} data-testid="batch-row" data-batch={batch.index} data-state={batch.state}>
                    <td className="num">{batch.index}</td>
                    <td>{batch.kind}</td>
                    <td>
                      <span className={`badge batch-${batch.state}`}>{batch.state}</span>
                    </td>
                    <td className="mono small">{batch.jobId ?? <span className="muted">not created yet</span>}</td>
                    <td className="num">
                      {done}/{batch.robots}
                    </td>
                    <td className={`num${batch.failed > 0 ? ' crit-text' : ''}`}>{batch.failed}</td>
                    <td>
                      <ProgressBar
                        progress={{ total: batch.robots, done, succeeded: batch.succeeded, failed: batch.failed, percent: 0 }}
                        label={`Batch ${batch.index} progress`}
                      />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function HeldRobots(props: { robots: readonly DeploymentRobotView[] }) {
  const groups = useMemo(() => heldByReason(props.robots), [props.robots]);
  if (groups.length === 0) return null;
  return (
    <section className="panel" aria-labelledby="held-title" data-testid="held-robots">
      <h2 id="held-title">Held back</h2>
      <p className="muted small">Robots that were not deployable when the deployment started: not forced, and not updated by it.</p>
      <ul className="plain">
        {groups.map((group) => (
          <li key={group.reason} data-testid="held-group" data-reason={group.reason}>
            <strong>
              {group.robotIds.length} {holdReasonText(group.reason)}
            </strong>
            : <span className="mono small">{group.robotIds.length <= 20 ? group.robotIds.join(', ') : `${group.robotIds.slice(0, 20).join(', ')} and ${group.robotIds.length - 20} more`}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

const STATE_TONE: Record<string, string> = {
  succeeded: 'ok',
  failed: 'crit',
  'rolled-back': 'warn',
  held: 'off',
  canceled: 'off',
  installing: 'info',
  queued: 'info',
  deferred: 'warn',
  pending: 'off',
};

function RobotsTable(props: { robots: readonly DeploymentRobotView[]; navigate: (route: Route) => void }) {
  const [stateFilter, setStateFilter] = useState('');
  const sorted = useMemo(() => sortDeploymentRobots(props.robots), [props.robots]);
  const rows = useMemo(() => (stateFilter ? sorted.filter((robot) => robot.state === stateFilter) : sorted), [sorted, stateFilter]);
  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => DEPLOYMENT_ROW_HEIGHT,
    overscan: 10,
    getItemKey: (index) => rows[index]?.robotId ?? index,
  });
  const now = useNow();
  return (
    <section className="panel" aria-labelledby="robots-title">
      <div className="toolbar">
        <h2 id="robots-title">Robots</h2>
        <label className="filter">
          <span>State</span>
          <select name="robot-state" value={stateFilter} onChange={(event) => setStateFilter(event.target.value)}>
            <option value="">all</option>
            {ROBOT_UPDATE_STATE_OPTIONS.map((state) => (
              <option key={state} value={state}>
                {state}
              </option>
            ))}
          </select>
        </label>
        <span className="row-count" aria-live="polite">
          {rows.length} of {props.robots.length} robots
        </span>
      </div>
      <div ref={scroller} className="deployment-robots" role="table" aria-label="Robots of the deployment" aria-rowcount={rows.length + 1}>
        <div role="rowgroup" className="deployment-robots-head">
          <div role="row" className="deployment-robot-row head" aria-rowindex={1}>
            {['Robot', 'State', 'Reason', 'Batch', 'From', 'Queued', 'Started', 'Finished', 'Took'].map((label) => (
              <div key={label} role="columnheader">
                {label}
              </div>
            ))}
          </div>
        </div>
        <div role="rowgroup" style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
          {virtualizer.getVirtualItems().map((item) => {
            const robot = rows[item.index];
            if (!robot) return null;
            return <RobotRow key={robot.robotId} robot={robot} index={item.index} top={item.start} now={Math.floor(now / 60_000) * 60_000} navigate={props.navigate} />;
          })}
        </div>
        {rows.length === 0 && <p className="muted empty-inline">No robot in this state.</p>}
      </div>
    </section>
  );
}

const RobotRow = memo(function RobotRow(props: { robot: DeploymentRobotView; index: number; top: number; now: number; navigate: (route: Route) => void }) {
  const { robot, now } = props;
  const started = parseTime(robot.startedAt);
  const finished = parseTime(robot.finishedAt);
  const reason = robot.reason === null ? null : robot.state === 'held' ? holdReasonText(robot.reason) : robot.reason;
  return (
    <div
      role="row"
      className="deployment-robot-row"
      aria-rowindex={props.index + 2}
      data-testid="deployment-robot"
      data-robot-id={robot.robotId}
      data-state={robot.state}
      style={{ transform: `translateY(${props.top}px)` }}
    >
      <div role="cell">
        <a
          className="mono"
          href={`/robots/${encodeURIComponent(robot.robotId)}`}
          onClick={(event) => {
            if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
            event.preventDefault();
            props.navigate({ view: 'robot', robotId: robot.robotId });
          }}
        >
          {robot.robotId}
        </a>
      </div>
      <div role="cell">
        <span className={`badge tone-${STATE_TONE[robot.state] ?? 'off'}`}>{robot.state}</span>
      </div>
      <div role="cell" title={reason ?? undefined}>
        {reason ?? <span className="muted">—</span>}
      </div>
      <div role="cell" className="num">
        {robot.batch ?? <span className="muted">—</span>}
      </div>
      <div role="cell" className="mono">
        {robot.fromVersion ?? <span className="muted">none</span>}
      </div>
      <div role="cell">{formatTime(robot.queuedAt, now)}</div>
      <div role="cell">{formatTime(robot.startedAt, now)}</div>
      <div role="cell">{formatTime(robot.finishedAt, now)}</div>
      <div role="cell" className="num">
        {started !== null && finished !== null ? formatDuration(finished - started) : <span className="muted">—</span>}
      </div>
    </div>
  );
});

function ActionDialog(props: {
  action: DeploymentAction;
  deployment: DeploymentView;
  api: ApiClient;
  onClose: () => void;
  onDone: (text: string) => void;
}) {
  const { action, api } = props;
  // What was confirmed is what the dialog opened with (live refreshes do not change the sentence under the button).
  const [confirmation] = useState(() => actionConfirmation(props.deployment, action));
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async () => {
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const trimmed = reason.trim();
      await api.deploymentAction(props.deployment.deploymentId, action, trimmed ? { reason: trimmed } : {});
      props.onDone(`${ACTION_VERB[action]}: done.`);
    } catch (failure) {
      setError(describeFailure(failure));
      setBusy(false);
    }
  };
  return (
    <Dialog title={confirmation.title} onClose={props.onClose}>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          void submit();
        }}
      >
        <p data-testid="action-effect">{confirmation.effect}</p>
        <label className="field">
          <span>Reason (optional, kept in the deployment’s record)</span>
          <textarea name="reason" rows={3} maxLength={500} value={reason} data-autofocus onChange={(event) => setReason(event.target.value)} />
        </label>
        {error && (
          <p role="alert" className="error" data-testid="action-error">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="button" data-action="cancel" onClick={props.onClose}>
            Back
          </button>
          {/* Not `disabled` while busy: a disabled button drops the focus (Esc and Tab would leave the dialog). */}
          <button type="submit" data-action="confirm" className={action === 'cancel' || action === 'rollback' ? 'danger' : 'primary'} aria-disabled={busy}>
            {confirmation.button}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
