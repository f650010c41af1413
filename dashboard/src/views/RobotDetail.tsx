import { lazy, Suspense, useEffect, useState, type MouseEvent } from 'react';
import type { RobotView } from '../../../schemas/index.js';
import type { ApiClient, FleetSnapshot, FleetStore, Permissions, Route, Timeline } from '../contracts.js';
import { navigate } from '../routing/index.js';
import { Age, HealthBadge, LifecycleBadge, StatusBadge } from './badges.js';
import { describeFailure, isApiFailure, OUTCOME_TEXT } from './bulk.js';
import { useNow } from './clock.js';
import { Dialog } from './Dialog.js';
import { teleoperationSessions } from './event-summary.js';
import { isValueStale, metricOf, statusOf, valueAgeMs } from './fleet-model.js';
import { formatDuration, formatMetric, formatMetricValue, formatTime, metricLabel, parseTime } from './format.js';
import { useKeys } from './keyboard.js';
import { TimelineList, useTimeline } from './TimelineList.js';
import { CHART_METRICS } from './chart-data.js';
import { CERTIFICATE_TONE_CLASS, certificateSummary } from './certificate-model.js';
import { softwareOf, UPDATE_STATE_TEXT } from './software-model.js';

/** uPlot is loaded only when a robot's page opens: it is not in the fleet's initial bundle. */
const TelemetryCharts = lazy(() => import('./TelemetryCharts.js'));

type ActionKind = 'mark-failed' | 'recover';

/**
 * One robot: its state, open alerts, teleoperation now and in the past, live telemetry charts and its event timeline,
 * with the actions the signed-in role may use. The view comes from the live store; a robot the store does not have
 * (yet) is read once from the API.
 */
export function RobotDetail(props: {
  robotId: string;
  snapshot: FleetSnapshot;
  api: ApiClient;
  store: FleetStore;
  permissions: Permissions;
  onBack: () => void;
}) {
  const { robotId, snapshot, api, store, permissions } = props;
  const live = snapshot.robots.get(robotId) ?? null;
  const [fetched, setFetched] = useState<{ robot: RobotView | null; error: string | null; notFound: boolean } | null>(null);
  const robot = live ?? fetched?.robot ?? null;

  useEffect(() => {
    if (live || !snapshot.loaded) return;
    const controller = new AbortController();
    api.getRobot(robotId, controller.signal).then(
      (view) => setFetched({ robot: view, error: null, notFound: false }),
      (error: unknown) => {
        if (controller.signal.aborted) return;
        const notFound = isApiFailure(error) && error.status === 404;
        setFetched({ robot: null, error: describeFailure(error), notFound });
      },
    );
    return () => controller.abort();
  }, [api, robotId, live === null, snapshot.loaded]);

  const [timeline, setTimeline] = useState<Timeline | null>(null);
  useEffect(() => {
    const opened = store.timeline(robotId);
    setTimeline(opened);
    return () => {
      opened.close();
      setTimeline(null);
    };
  }, [store, robotId]);

  const [dialog, setDialog] = useState<ActionKind | null>(null);
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const reportNow = async () => {
    setBusy(true);
    setMessage(null);
    try {
      const answer = await api.discover([robotId]);
      const outcome = answer.robots?.find((robot) => robot.robotId === robotId)?.outcome ?? (answer.asked > 0 ? 'asked' : 'offline');
      setMessage(
        outcome === 'asked'
          ? { ok: true, text: 'Asked the robot to report now; its sample arrives on the live feed.' }
          : { ok: false, text: `Report now: ${robotId} ${OUTCOME_TEXT[outcome]}.` },
      );
    } catch (error) {
      setMessage({ ok: false, text: `Report now did not work: ${describeFailure(error)}` });
    } finally {
      setBusy(false);
    }
  };

  useKeys(
    {
      Escape: () => props.onBack(),
      ...(permissions.markFailed ? { f: () => setDialog('mark-failed') } : {}),
      ...(permissions.recover ? { r: () => setDialog('recover') } : {}),
      ...(permissions.reportNow ? { n: () => void reportNow() } : {}),
    },
    dialog === null,
  );

  return (
    <article className="robot-detail" data-testid="robot-detail" data-robot-id={robotId} aria-labelledby="robot-title">
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <a
          href="/"
          onClick={(event) => {
            if (event.button !== 0 || event.metaKey || event.ctrlKey) return;
            event.preventDefault();
            props.onBack();
          }}
        >
          ← Fleet
        </a>
        <span className="muted small"> (Esc)</span>
      </nav>
      <header className="detail-head">
        <h1 id="robot-title" className="view-title mono">
          {robotId}
        </h1>
        {robot && <RobotSummary robot={robot} />}
        <div className="detail-actions" role="toolbar" aria-label="Robot actions">
          {permissions.reportNow && (
            <button type="button" data-action="report-now" disabled={busy} onClick={() => void reportNow()} aria-keyshortcuts="n">
              Report now <kbd>n</kbd>
            </button>
          )}
          {permissions.markFailed && (
            <button type="button" className="danger" data-action="mark-failed" onClick={() => setDialog('mark-failed')} aria-keyshortcuts="f">
              Mark failed <kbd>f</kbd>
            </button>
          )}
          {permissions.recover && (
            <button type="button" data-action="recover" onClick={() => setDialog('recover')} aria-keyshortcuts="r">
              Recover <kbd>r</kbd>
            </button>
          )}
        </div>
      </header>
      {message &&
        (message.ok ? (
          <p role="status" className="notice">
            {message.text}
          </p>
        ) : (
          <p role="alert" className="error">
            {message.text}
          </p>
        ))}
      {!robot && fetched?.error && (
        <p role="alert" className="error">
          {fetched.notFound ? `There is no robot ${robotId}.` : `Could not read robot ${robotId}: ${fetched.error}`}
        </p>
      )}
      {!robot && !fetched?.error && <p className="muted">Loading {robotId}…</p>}
      {robot && (
        <div className="detail-grid">
          <AlertsPanel robot={robot} />
          <TeleoperationPanel robot={robot} timeline={timeline} />
          <TelemetryPanel robot={robot} />
        </div>
      )}
      <section className="panel charts-panel" aria-labelledby="charts-title">
        <h2 id="charts-title">Telemetry, last hour</h2>
        <Suspense fallback={<ChartPlaceholders text="Loading charts…" />}>
          <TelemetryCharts robotId={robotId} api={api} store={store} />
        </Suspense>
      </section>
      <section className="panel" aria-labelledby="timeline-title">
        <h2 id="timeline-title">Timeline</h2>
        {timeline ? <TimelineList timeline={timeline} /> : <p className="muted">Opening…</p>}
      </section>
      {dialog && (
        <ActionDialog
          kind={dialog}
          robotId={robotId}
          api={api}
          onClose={() => setDialog(null)}
          onDone={(text) => {
            setDialog(null);
            setMessage({ ok: true, text });
            void store.refresh().catch(() => undefined);
          }}
        />
      )}
    </article>
  );
}

function ChartPlaceholders(props: { text: string }) {
  return (
    <div className="charts">
      {CHART_METRICS.map((metric) => (
        <div key={metric} className="chart" data-testid={`chart-${metric}`}>
          <h3>{metricLabel(metric)}</h3>
          <p className="muted">{props.text}</p>
        </div>
      ))}
    </div>
  );
}

function RobotSummary(props: { robot: RobotView }) {
  const { robot } = props;
  const now = useNow();
  const status = statusOf(robot, now);
  const lastWord = parseTime(robot.lastSeenAt) ?? parseTime(robot.telemetry?.sampledAt);
  return (
    <dl className="facts">
      <div>
        <dt>Status</dt>
        <dd data-testid="detail-status">
          <StatusBadge status={status} lastWordAt={lastWord} healthy={robot.healthy && robot.lifecycle !== 'failed'} />
        </dd>
      </div>
      <div>
        <dt>Lifecycle</dt>
        <dd>
          <LifecycleBadge lifecycle={robot.lifecycle} />
        </dd>
      </div>
      <div>
        <dt>Health</dt>
        <dd>
          <HealthBadge view={robot} />
        </dd>
      </div>
      <div>
        <dt>Model</dt>
        <dd>{robot.model}</dd>
      </div>
      <div>
        <dt>Connection</dt>
        <dd>
          {robot.connection ? (
            <>
              {robot.connection.ipAddress ?? 'address unknown'} since {formatTime(robot.connection.since, now)} (
              <Age at={parseTime(robot.connection.since)} />)
            </>
          ) : (
            <span className="muted">not connected</span>
          )}
        </dd>
      </div>
      {robot.failure && (
        <div className="failure">
          <dt>Failure</dt>
          <dd data-testid="failure-reason">
            {robot.failure.reason} <span className="muted">— {robot.failure.by || 'someone'}, {formatTime(robot.failure.at, now)}</span>
          </dd>
        </div>
      )}
      <SoftwareFacts robot={robot} now={now} />
      <CertificateFacts robot={robot} now={now} />
      {robot.rejectedMessages.count > 0 && (
        <div>
          <dt>Refused messages</dt>
          <dd>
            {robot.rejectedMessages.count}
            {robot.rejectedMessages.last ? ` (last: ${robot.rejectedMessages.last.reason})` : ''}
          </dd>
        </div>
      )}
    </dl>
  );
}

/** The release the robot runs and the update it is in, linking to that update's deployment. */
function SoftwareFacts(props: { robot: RobotView; now: number }) {
  const software = softwareOf(props.robot);
  const update = software?.update ?? null;
  return (
    <div>
      <dt>Software</dt>
      <dd data-testid="detail-software">
        {software === null ? (
          <span className="muted">not known yet</span>
        ) : software.version ? (
          <span className="mono">{software.version}</span>
        ) : (
          <span className="muted">no release installed</span>
        )}
        {update && (
          <>
            {' · '}
            <span className={`badge update-${update.state}`} data-testid="detail-update">
              updating to {update.version}: {UPDATE_STATE_TEXT[update.state] ?? update.state}
            </span>
            <span className="muted small">
              since {formatTime(update.since, props.now)} ·{' '}
              <a href={`/deployments/${encodeURIComponent(update.deploymentId)}`} onClick={(event) => followLink(event, { view: 'deployment', deploymentId: update.deploymentId })}>
                {update.deploymentId}
              </a>
            </span>
          </>
        )}
      </dd>
    </div>
  );
}

/** A plain left click on an in-app link navigates without a reload; other clicks (new tab…) are the browser's. */
function followLink(event: MouseEvent<HTMLAnchorElement>, route: Route): void {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(route);
}

/** The robot's certificate: id, issue, expiry (amber within 30 days, red past), last rotation and failed rotation. */
function CertificateFacts(props: { robot: RobotView; now: number }) {
  const certificate = props.robot.certificate ?? null;
  const summary = certificateSummary(certificate, props.now);
  if (!certificate || !summary) {
    return (
      <div>
        <dt>Certificate</dt>
        <dd data-testid="detail-certificate">
          <span className="muted">not known to the cloud (never provisioned by claim nor rotated)</span>
        </dd>
      </div>
    );
  }
  const failure = certificate.lastRotationFailure;
  return (
    <div>
      <dt>Certificate</dt>
      <dd data-testid="detail-certificate" data-expiry={summary.tone}>
        <span title={certificate.id ?? undefined}>{certificate.id ? `${certificate.id.slice(0, 12)}…` : 'id unknown'}</span>
        {certificate.issuedAt && <> · issued {formatTime(certificate.issuedAt, props.now)} ({summary.age})</>}
        {' · '}
        <span className={CERTIFICATE_TONE_CLASS[summary.tone]}>{summary.expiry}</span>
        {certificate.notAfter && <span className="muted"> ({formatTime(certificate.notAfter, props.now)})</span>}
        <br />
        <span className="muted small">
          {certificate.rotatedAt ? `rotated ${formatTime(certificate.rotatedAt, props.now)}` : 'never rotated'}
          {failure && ` · last failed rotation ${formatTime(failure.at, props.now)}: ${failure.reason}${failure.detail ? ` (${failure.detail})` : ''}`}
        </span>
      </dd>
    </div>
  );
}

function AlertsPanel(props: { robot: RobotView }) {
  const now = useNow();
  const alerts = [...props.robot.alerts].sort((a, b) => (parseTime(b.raisedAt) ?? 0) - (parseTime(a.raisedAt) ?? 0));
  return (
    <section className="panel" aria-labelledby="alerts-title">
      <h2 id="alerts-title">Open alerts</h2>
      {alerts.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <ul className="plain">
          {alerts.map((alert) => (
            <li key={alert.metric} data-testid="robot-alert" data-severity={alert.severity} data-metric={alert.metric}>
              <span className={`badge sev-${alert.severity}`}>{alert.severity}</span> <strong>{metricLabel(alert.metric)}</strong>{' '}
              {formatMetricValue(alert.metric, alert.value)} <span className="muted">(threshold {formatMetricValue(alert.metric, alert.threshold)})</span>
              <span className="muted">
                {' '}
                since {formatTime(alert.raisedAt, now)}, open {formatDuration(now - (parseTime(alert.raisedAt) ?? now))}
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function TeleoperationPanel(props: { robot: RobotView; timeline: Timeline | null }) {
  const teleop = props.robot.teleoperation;
  const now = useNow();
  return (
    <section className="panel" aria-labelledby="teleop-title" data-testid="teleoperation" data-active={String(teleop.active)}>
      <h2 id="teleop-title">Teleoperation</h2>
      {teleop.active ? (
        <p>
          <span className={`badge teleop${teleop.confirmed ? '' : ' unconfirmed'}`}>active</span> by{' '}
          <span className="mono">{teleop.operatorAddress ?? 'an unknown operator'}</span> since {formatTime(teleop.since, now)} (
          <Age at={parseTime(teleop.since)} />)
          {teleop.confirmed ? (
            ' · confirmed'
          ) : (
            <strong className="warn-text"> · unconfirmed: the robot’s link dropped since it last spoke of this session</strong>
          )}
        </p>
      ) : (
        <p className="muted">Not teleoperated now.</p>
      )}
      {props.timeline && <PastSessions timeline={props.timeline} />}
    </section>
  );
}

function PastSessions(props: { timeline: Timeline }) {
  const snapshot = useTimeline(props.timeline);
  const now = useNow();
  const sessions = teleoperationSessions(snapshot.events).filter((session) => session.stoppedAt !== null);
  if (sessions.length === 0) return <p className="muted small">No past sessions in the loaded timeline.</p>;
  return (
    <>
      <h3>Past sessions</h3>
      <ul className="plain small">
        {sessions.slice(0, 10).map((session) => (
          <li key={session.startedSeq} data-testid="teleop-session">
            {formatTime(session.startedAt, now)} · {session.operator ?? 'unknown operator'} ·{' '}
            {session.durationMs === null ? '?' : formatDuration(session.durationMs)}
            {session.reason ? ` · ${session.reason}` : ''}
          </li>
        ))}
      </ul>
    </>
  );
}

function TelemetryPanel(props: { robot: RobotView }) {
  const { robot } = props;
  const now = useNow();
  const fields = ['cpuTemperatureC', 'cpuPercent', 'memoryPercent', 'diskPercent'] as const;
  const versions = ['agentVersion', 'lerobotVersion'] as const;
  return (
    <section className="panel" aria-labelledby="latest-title">
      <h2 id="latest-title">Latest telemetry</h2>
      {!robot.telemetry ? (
        <p className="muted">The robot has not sent telemetry.</p>
      ) : (
        <dl className="facts compact">
          {fields.map((field) => {
            const value = metricOf(robot.telemetry, field);
            const stale = value ? isValueStale(robot, value, now) : false;
            return (
              <div key={field}>
                <dt>{metricLabel(field)}</dt>
                <dd className={stale ? 'stale-value' : 'live-value'}>
                  {value ? `${formatMetric(field, value.value)} · ${formatDuration(valueAgeMs(value, now))} old${stale ? ' (stale)' : ''}` : '—'}
                </dd>
              </div>
            );
          })}
          {versions.map((field) => {
            const value = metricOf(robot.telemetry, field);
            return (
              <div key={field}>
                <dt>{field === 'agentVersion' ? 'Agent' : 'LeRobot'}</dt>
                <dd>{value ? String(value.value) : '—'}</dd>
              </div>
            );
          })}
        </dl>
      )}
    </section>
  );
}

function ActionDialog(props: {
  kind: ActionKind;
  robotId: string;
  api: ApiClient;
  onClose: () => void;
  onDone: (text: string) => void;
}) {
  const { kind, robotId, api } = props;
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const failing = kind === 'mark-failed';
  const submit = async () => {
    if (failing && !text.trim()) {
      setError('Say why the robot failed: the reason is kept in its history.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const result = failing ? await api.markFailed(robotId, text.trim()) : await api.recover(robotId, text.trim() || undefined);
      props.onDone(failing ? `${robotId} is marked failed (${result.robot.lifecycle}).` : `${robotId} is recovered (now ${result.robot.lifecycle}).`);
    } catch (failure) {
      setError(`${failing ? 'Mark failed' : 'Recover'} did not work: ${describeFailure(failure)}`);
      setBusy(false);
    }
  };
  return (
    <Dialog title={failing ? `Mark ${robotId} failed?` : `Recover ${robotId}?`} onClose={props.onClose}>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          void submit();
        }}
      >
        <label className="field">
          <span>{failing ? 'Reason (required)' : 'Note (optional)'}</span>
          <textarea
            name={failing ? 'reason' : 'note'}
            rows={3}
            maxLength={500}
            required={failing}
            value={text}
            data-autofocus
            onChange={(event) => setText(event.target.value)}
          />
        </label>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="button" data-action="cancel" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" data-action="confirm" className={failing ? 'danger' : 'primary'} disabled={busy}>
            {failing ? 'Mark failed' : 'Recover'}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
