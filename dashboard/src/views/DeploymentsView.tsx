import { useCallback, useEffect, useRef, useState, type MouseEvent } from 'react';
import type { DeploymentSummary } from '../../../schemas/index.js';
import type { ApiClient, FleetStore, Route } from '../contracts.js';
import { browserLiveEnvironment } from '../live/browser.js';
import { refreshListOnChanges } from '../live/deployment-watch.js';
import { describeFailure } from './bulk.js';
import { useNow } from './clock.js';
import { appendPage, describeTargets, isFinal, mergeFirstPage, progressOf } from './deployment-model.js';
import { formatTime } from './format.js';

/** While a deployment on the first page is not final, the first page is read again this often. */
export const LIST_REFRESH_MS = 5_000;
const PAGE = 50;

/**
 * Every deployment, newest first, a page at a time ("Load older"), each with its state, release, kind, counts and a
 * progress bar, linking to its page. The first page is read again every LIST_REFRESH_MS while one of the shown
 * deployments is still running or paused (merged by id: older pages stay), and on the live feed's DeploymentChanged
 * (any deployment's record moved, a new one too), at most once a second.
 */
export function DeploymentsView(props: { api: ApiClient; navigate: (route: Route) => void; store?: Pick<FleetStore, 'onDeploymentChanges'> }) {
  const { api, navigate, store } = props;
  const now = useNow();
  const [items, setItems] = useState<readonly DeploymentSummary[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const mounted = useRef(true);
  const olderRead = useRef(false);
  // Set in the effect too: StrictMode runs effects twice (mount, unmount, mount) on one ref.
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const readFirst = useCallback(
    async (signal?: AbortSignal) => {
      try {
        const page = await api.listDeployments({ limit: PAGE, ...(signal ? { signal } : {}) });
        if (!mounted.current) return;
        setItems((current) => mergeFirstPage(current, page.items));
        // Once older pages are read, the cursor is the last one's; before, it is the first page's.
        if (!olderRead.current) setCursor(page.nextCursor);
        setLoaded(true);
        setError(null);
      } catch (failure) {
        if (signal?.aborted || !mounted.current) return;
        setError(describeFailure(failure));
      }
    },
    [api],
  );

  useEffect(() => {
    const controller = new AbortController();
    void readFirst(controller.signal);
    return () => controller.abort();
  }, [readFirst]);

  useEffect(() => {
    if (!store) return;
    return refreshListOnChanges({ onDeploymentChanges: (listener) => store.onDeploymentChanges(listener), read: () => readFirst(), clock: browserLiveEnvironment });
  }, [store, readFirst]);

  const anyOpen = items.some((item) => !isFinal(item.state));
  useEffect(() => {
    if (!anyOpen) return;
    const id = window.setInterval(() => void readFirst(), LIST_REFRESH_MS);
    return () => window.clearInterval(id);
  }, [anyOpen, readFirst]);

  const loadOlder = async () => {
    if (cursor === null) return;
    setLoadingOlder(true);
    try {
      const page = await api.listDeployments({ limit: PAGE, cursor });
      if (!mounted.current) return;
      olderRead.current = true;
      setItems((current) => appendPage(current, page.items));
      setCursor(page.nextCursor);
    } catch (failure) {
      if (mounted.current) setError(describeFailure(failure));
    } finally {
      if (mounted.current) setLoadingOlder(false);
    }
  };

  const open = (deploymentId: string) => (event: MouseEvent<HTMLAnchorElement>) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate({ view: 'deployment', deploymentId });
  };

  return (
    <section className="deployments" aria-labelledby="deployments-title">
      <div className="toolbar">
        <h1 id="deployments-title" className="view-title">
          Deployments
        </h1>
        <span className="muted small">Newest first. Start one from the fleet: select robots or filter, then “Deploy”.</span>
      </div>
      {error && (
        <p role="alert" className="error">
          Could not read the deployments: {error}
        </p>
      )}
      {!loaded && !error && <p className="muted">Loading deployments…</p>}
      {loaded && items.length === 0 && <p className="muted">No deployments yet.</p>}
      {items.length > 0 && (
        <div className="table-wrap">
          <table className="data-table" data-testid="deployments-table">
            <thead>
              <tr>
                <th scope="col">Deployment</th>
                <th scope="col">State</th>
                <th scope="col">Release</th>
                <th scope="col">Kind</th>
                <th scope="col">Targeted</th>
                <th scope="col">Succeeded</th>
                <th scope="col">Failed</th>
                <th scope="col">Held</th>
                <th scope="col">Progress</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {items.map((item) => {
                const progress = progressOf(item);
                return (
                  <tr key={item.deploymentId} data-testid="deployment-row" data-deployment-id={item.deploymentId} data-state={item.state}>
                    <td>
                      <a className="mono" href={`/deployments/${encodeURIComponent(item.deploymentId)}`} onClick={open(item.deploymentId)}>
                        {item.deploymentId}
                      </a>
                      <div className="muted small" title={describeTargets(item.targets)}>
                        {describeTargets(item.targets)}
                      </div>
                    </td>
                    <td>
                      <DeploymentStateBadge state={item.state} />
                    </td>
                    <td className="mono">{item.release.version}</td>
                    <td>{item.kind === 'rollback' ? <span className="badge kind-rollback">rollback</span> : 'deploy'}</td>
                    <td className="num">{item.counts.targeted}</td>
                    <td className="num">{item.counts.succeeded}</td>
                    <td className={`num${item.counts.failed > 0 ? ' crit-text' : ''}`}>{item.counts.failed}</td>
                    <td className="num">{item.counts.held}</td>
                    <td>
                      <ProgressBar progress={progress} label={`${item.deploymentId} progress`} />
                    </td>
                    <td>
                      {item.createdBy} <span className="muted">· {formatTime(item.createdAt, now)}</span>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <div className="timeline-end">
            {cursor !== null ? (
              <button type="button" onClick={() => void loadOlder()} disabled={loadingOlder}>
                {loadingOlder ? 'Loading…' : 'Load older deployments'}
              </button>
            ) : (
              loaded && <span className="muted small">The first deployment.</span>
            )}
          </div>
        </div>
      )}
    </section>
  );
}

export function DeploymentStateBadge(props: { state: DeploymentSummary['state'] }) {
  return (
    <span className={`badge deployment-${props.state}`} data-testid="deployment-state">
      {props.state}
    </span>
  );
}

/** Succeeded (green) and failed (red) shares of the robots to update, with the numbers in words beside it. */
export function ProgressBar(props: { progress: ReturnType<typeof progressOf>; label: string }) {
  const { progress } = props;
  const share = (n: number) => (progress.total === 0 ? 0 : (100 * n) / progress.total);
  const other = progress.done - progress.succeeded - progress.failed;
  return (
    <span className="progress-cell">
      <span
        className="bar"
        role="progressbar"
        aria-label={props.label}
        aria-valuemin={0}
        aria-valuemax={progress.total}
        aria-valuenow={Math.min(progress.done, progress.total)}
        aria-valuetext={`${progress.done} of ${progress.total} finished, ${progress.failed} failed`}
      >
        <span className="bar-ok" style={{ width: `${share(progress.succeeded)}%` }} />
        <span className="bar-failed" style={{ width: `${share(progress.failed)}%` }} />
        <span className="bar-other" style={{ width: `${share(Math.max(0, other))}%` }} />
      </span>
      <span className="small num">
        {progress.done}/{progress.total}
      </span>
    </span>
  );
}
