import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore, type MouseEvent } from 'react';
import type { ApiClient, AuthSession, DashboardConfig, FleetSnapshot, FleetStore, LinkState, Route } from './contracts.js';
import { useRoute } from './routing/index.js';
import { AlertsView } from './views/AlertsView.js';
import { permissionsFor } from './views/bulk.js';
import { Dialog } from './views/Dialog.js';
import { EMPTY_FLEET_ROUTE, type FleetRoute } from './views/fleet-model.js';
import { FleetView } from './views/FleetView.js';
import { useKeys } from './views/keyboard.js';
import { RobotDetail } from './views/RobotDetail.js';

import './styles.css';

export interface AppProps {
  config: DashboardConfig;
  session: AuthSession;
  api: ApiClient;
  store: FleetStore;
}

/** The deployment pages load when first opened: they are not in the fleet's initial bundle. */
const DeploymentsView = lazy(() => import('./views/DeploymentsView.js').then((m) => ({ default: m.DeploymentsView })));
const DeploymentDetail = lazy(() => import('./views/DeploymentDetail.js').then((m) => ({ default: m.DeploymentDetail })));

const LINK_TEXT: Record<LinkState, string> = {
  live: 'Live',
  connecting: 'Connecting…',
  stale: 'Stale — data may be out of date',
};

/**
 * The ops console: a header with the stage, the fleet's live counts, the live link's state and the user; navigation
 * between the fleet, the open alerts and one robot (the URL says which, routing/ keeps it); keyboard shortcuts, `?`
 * lists them. Reads the fleet through the store's snapshot (one per animation frame at most).
 */
export function App(props: AppProps) {
  const { config, session, api, store } = props;
  const subscribe = useCallback((listener: () => void) => store.subscribe(listener), [store]);
  const getSnapshot = useCallback(() => store.getSnapshot(), [store]);
  const snapshot = useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
  const [route, navigate] = useRoute();
  const permissions = useMemo(() => permissionsFor(session.user.role), [session.user.role]);
  const [help, setHelp] = useState(false);

  // Esc on a robot goes back to the fleet as it was (filters, sort, selection).
  const lastFleet = useRef<FleetRoute>(EMPTY_FLEET_ROUTE);
  if (route.view === 'fleet') lastFleet.current = route;
  const backToFleet = useCallback(() => navigate(lastFleet.current), [navigate]);

  const stale = snapshot.link.state === 'stale';
  useEffect(() => {
    document.documentElement.classList.toggle('is-stale', stale);
    return () => document.documentElement.classList.remove('is-stale');
  }, [stale]);
  useEffect(() => {
    document.title = `${titleOf(route)} · ${config.stage} · Lekiwi Heartbeat`;
  }, [route, config.stage]);

  useKeys({ '?': () => setHelp(true) });
  useKeys({ Escape: backToFleet }, route.view === 'alerts' || route.view === 'deployments');

  const go = (target: Route) => (event: MouseEvent<HTMLAnchorElement>) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(target);
  };

  return (
    <div className={`app${stale ? ' is-stale' : ''}`}>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="app-header">
        <div className="brand">
          <span className="brand-name">Lekiwi Heartbeat</span>
          <span className="stage" data-testid="stage" title="Stage">
            {config.stage}
          </span>
        </div>
        <nav aria-label="Main" className="main-nav">
          <a href="/" onClick={go(EMPTY_FLEET_ROUTE)} aria-current={route.view === 'fleet' ? 'page' : undefined}>
            Fleet
          </a>
          <a href="/alerts" onClick={go({ view: 'alerts' })} aria-current={route.view === 'alerts' ? 'page' : undefined}>
            Alerts
          </a>
          <a
            href="/deployments"
            onClick={go({ view: 'deployments' })}
            aria-current={route.view === 'deployments' || route.view === 'deployment' ? 'page' : undefined}
          >
            Deployments
          </a>
        </nav>
        <Counts snapshot={snapshot} />
        <span className={`link-state link-${snapshot.link.state}`} data-testid="link-state" data-state={snapshot.link.state} role="status">
          {LINK_TEXT[snapshot.link.state]}
          {stale && <span className="visually-hidden"> (the live link is down: values are stale)</span>}
        </span>
        <div className="user">
          <span data-testid="user">
            {session.user.username} <span className="role">{session.user.role ?? 'no fleet role'}</span>
          </span>
          <button type="button" className="help-button" onClick={() => setHelp(true)} aria-label="Keyboard shortcuts (?)">
            ?
          </button>
          <button type="button" data-action="sign-out" onClick={() => session.signOut()}>
            Sign out
          </button>
        </div>
      </header>
      {session.user.role === null && (
        <p role="alert" className="error banner">
          {session.user.username} is in no fleet group (operator, engineer or admin): the API will refuse every request. Ask an
          admin to add you to one.
        </p>
      )}
      <main id="main" className="main">
        {route.view === 'fleet' && (
          <FleetView route={route} navigate={navigate} snapshot={snapshot} api={api} store={store} permissions={permissions} />
        )}
        {route.view === 'alerts' && <AlertsView snapshot={snapshot} navigate={navigate} />}
        {(route.view === 'deployments' || route.view === 'deployment') && (
          <Suspense fallback={<p className="muted">Loading…</p>}>
            {route.view === 'deployments' ? (
              <DeploymentsView api={api} navigate={navigate} store={store} />
            ) : (
              <DeploymentDetail
                key={route.deploymentId}
                deploymentId={route.deploymentId}
                api={api}
                store={store}
                permissions={permissions}
                navigate={navigate}
              />
            )}
          </Suspense>
        )}
        {route.view === 'robot' && (
          <RobotDetail
            key={route.robotId}
            robotId={route.robotId}
            snapshot={snapshot}
            api={api}
            store={store}
            permissions={permissions}
            onBack={backToFleet}
          />
        )}
      </main>
      {help && <HelpDialog onClose={() => setHelp(false)} />}
    </div>
  );
}

export default App;

function titleOf(route: Route): string {
  switch (route.view) {
    case 'fleet':
      return 'Fleet';
    case 'alerts':
      return 'Alerts';
    case 'robot':
      return route.robotId;
    case 'deployments':
      return 'Deployments';
    case 'deployment':
      return route.deploymentId;
  }
}

/** The fleet's counts: /metrics as the store keeps it, or counted from the robots until it has arrived. */
function Counts(props: { snapshot: FleetSnapshot }) {
  const counts = useMemo(() => countsOf(props.snapshot), [props.snapshot.metrics, props.snapshot.robots]);
  const item = (id: string, label: string, value: number, tone = '') => (
    <div className={`count ${tone}`}>
      <dt>{label}</dt>
      <dd data-testid={`metric-${id}`} className="live-value">
        {value}
      </dd>
    </div>
  );
  return (
    <dl className="counts" aria-label="Fleet counts">
      {item('robots', 'Robots', counts.robots)}
      {item('online', 'Online', counts.online)}
      {item('offline', 'Offline', counts.offline, counts.offline > 0 ? 'tone-offline' : '')}
      {item('teleoperated', 'Teleoperated', counts.teleoperated)}
      {item('alerts-critical', 'Critical', counts.critical, counts.critical > 0 ? 'tone-critical' : '')}
      {item('alerts-warning', 'Warning', counts.warning, counts.warning > 0 ? 'tone-warning' : '')}
    </dl>
  );
}

function countsOf(snapshot: FleetSnapshot) {
  const m = snapshot.metrics;
  if (m) {
    return {
      robots: m.robots,
      online: m.byStatus.online ?? 0,
      offline: m.byStatus.offline ?? 0,
      teleoperated: m.activeTeleoperations,
      critical: m.activeAlerts.critical,
      warning: m.activeAlerts.warning,
    };
  }
  const c = { robots: 0, online: 0, offline: 0, teleoperated: 0, critical: 0, warning: 0 };
  for (const robot of snapshot.robots.values()) {
    c.robots += 1;
    if (robot.status === 'online') c.online += 1;
    else c.offline += 1;
    if (robot.teleoperation.active) c.teleoperated += 1;
    for (const alert of robot.alerts) c[alert.severity] += 1;
  }
  return c;
}

const SHORTCUTS: readonly (readonly [string, string])[] = [
  ['/', 'Search the fleet'],
  ['j / k', 'Move the cursor down / up the fleet'],
  ['x', 'Select or unselect the robot under the cursor'],
  ['Enter', 'Open the robot under the cursor'],
  ['Esc', 'Clear the selection, then the search; on a robot: back to the fleet; on a deployment: back to the list; closes a dialog'],
  ['f', 'On a robot: mark it failed (engineer, admin)'],
  ['r', 'On a robot: recover it (engineer, admin)'],
  ['n', 'On a robot: ask it to report now'],
  ['?', 'This list'],
];

function HelpDialog(props: { onClose: () => void }) {
  return (
    <Dialog title="Keyboard shortcuts" label="Keyboard shortcuts" onClose={props.onClose}>
      <p className="muted small">Keys do nothing while you type in a field.</p>
      <table className="shortcuts">
        <tbody>
          {SHORTCUTS.map(([key, what]) => (
            <tr key={key}>
              <th scope="row">
                <kbd>{key}</kbd>
              </th>
              <td>{what}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="dialog-actions">
        <button type="button" data-action="cancel" onClick={props.onClose}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
