import { memo, type ReactNode } from 'react';
import type { RobotView } from '../../../schemas/index.js';
import { Age, HealthBadge, LifecycleBadge, StatusBadge } from './badges.js';
import { useNow } from './clock.js';
import { isValueStale, metricOf, NUMERIC_COLUMNS, valueAgeMs, type FleetRow } from './fleet-model.js';
import { formatDuration, formatMetric, formatTime, parseTime } from './format.js';
import { CERTIFICATE_TONE_CLASS, certificateSummary } from './certificate-model.js';
import { softwareOf, updateText } from './software-model.js';

/** Fixed row height (px): the virtualizer positions rows by index, so every row must be exactly this tall. */
export const ROW_HEIGHT = 34;

export interface RowActions {
  open(robotId: string): void;
  toggle(robotId: string): void;
  focusRow(robotId: string): void;
}

export interface FleetGridRowProps {
  row: FleetRow;
  index: number;
  top: number;
  selected: boolean;
  cursor: boolean;
  /** performance.now() when the robot's view last changed, integer ms. */
  updatedAt: number;
  actions: RowActions;
}

/**
 * One robot's row. Memoized on its props: a row re-renders only when its FleetRow (its view or status), selection,
 * cursor or position changed. Ages inside tick on their own (Age).
 */
export const FleetGridRow = memo(function FleetGridRow(props: FleetGridRowProps) {
  const { row, actions } = props;
  const view = row.view;
  return (
    <div
      role="row"
      className={`grid-row${props.cursor ? ' cursor' : ''}${props.selected ? ' selected' : ''}${row.status !== 'online' ? ` row-${row.status}` : ''}`}
      aria-rowindex={props.index + 2}
      aria-selected={props.selected}
      data-robot-id={row.id}
      data-updated-at={props.updatedAt}
      data-cursor={props.cursor ? 'true' : undefined}
      style={{ transform: `translateY(${props.top}px)` }}
      onClick={() => actions.focusRow(row.id)}
    >
      <div role="gridcell" data-col="robot" className="cell-robot">
        <input
          type="checkbox"
          checked={props.selected}
          aria-label={`Select ${row.id}`}
          onChange={() => actions.toggle(row.id)}
        />
        <a
          href={`/robots/${encodeURIComponent(row.id)}`}
          onClick={(event) => {
            if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
            event.preventDefault();
            actions.open(row.id);
          }}
        >
          {row.id}
        </a>
        <span className="muted small">{view.model}</span>
      </div>
      <div role="gridcell" data-col="status">
        <StatusBadge status={row.status} lastWordAt={row.lastWordAt} healthy={view.healthy && view.lifecycle !== 'failed'} />
      </div>
      <div role="gridcell" data-col="lifecycle">
        <LifecycleBadge lifecycle={view.lifecycle} />
      </div>
      <div role="gridcell" data-col="health" title={view.failure ? `Failed: ${view.failure.reason}` : undefined}>
        <HealthBadge view={view} />
      </div>
      <div role="gridcell" data-col="teleoperation">
        <Teleoperation view={view} />
      </div>
      <div role="gridcell" data-col="alerts">
        {row.critical > 0 && (
          <span className="badge sev-critical" data-testid="alert-badge" data-severity="critical">
            {row.critical} critical
          </span>
        )}
        {row.warning > 0 && (
          <span className="badge sev-warning" data-testid="alert-badge" data-severity="warning">
            {row.warning} warning
          </span>
        )}
        {row.critical + row.warning === 0 && <span className="muted">—</span>}
      </div>
      {NUMERIC_COLUMNS.map((column) => (
        <MetricCell key={column.id} column={column.id} view={view} field={column.field} />
      ))}
      <SoftwareCell view={view} />
      <div role="gridcell" data-col="agentVersion">
        <VersionCell view={view} field="agentVersion" />
      </div>
      <div role="gridcell" data-col="lerobotVersion">
        <VersionCell view={view} field="lerobotVersion" />
      </div>
      <CertificateCell view={view} />
      <div role="gridcell" data-col="lastSeen" title={view.lastSeenAt ?? undefined}>
        {row.lastWordAt === null ? (
          <span className="muted">never</span>
        ) : (
          <>
            <Age at={row.lastWordAt} /> ago
          </>
        )}
      </div>
    </div>
  );
});

/**
 * The certificate's age and expiry, amber within 30 days of it, red once past; re-renders with the shared clock.
 * `data-expiry` names the tone (ok, expiring, expired, unknown) for tests and styles.
 */
function CertificateCell(props: { view: RobotView }) {
  const now = useNow();
  const certificate = props.view.certificate ?? null;
  const summary = certificateSummary(certificate, now);
  if (!summary) {
    return (
      <div role="gridcell" data-col="certificate" title="not known to the cloud (never provisioned by claim nor rotated)">
        <span className="muted">—</span>
      </div>
    );
  }
  const title = [
    certificate?.id ? `certificate ${certificate.id.slice(0, 12)}…` : 'certificate unknown',
    certificate?.notAfter ? `valid until ${formatTime(certificate.notAfter, now)}` : null,
    summary.failure,
  ]
    .filter(Boolean)
    .join('\n');
  return (
    <div role="gridcell" data-col="certificate" data-expiry={summary.tone} title={title}>
      {summary.age !== null && <span>{summary.age} · </span>}
      <span className={CERTIFICATE_TONE_CLASS[summary.tone]}>{summary.expiry}</span>
      {summary.failure && (
        <span className="badge sev-warning" data-testid="rotation-failed" title={summary.failure} role="img" aria-label={summary.failure}>
          !
        </span>
      )}
    </div>
  );
}

/** The release the robot runs, and "→ 1.5.0" while an update to it is open (queued, deferred or installing). */
function SoftwareCell(props: { view: RobotView }) {
  const software = softwareOf(props.view);
  const updating = updateText(software);
  return (
    <div role="gridcell" data-col="version" title={updating ?? undefined}>
      {software?.version ? <span className="mono">{software.version}</span> : <span className="muted">{software ? 'none' : '—'}</span>}
      {software?.update && (
        <span className={`badge update-${software.update.state}`} data-testid="update-badge" data-state={software.update.state}>
          → {software.update.version}
          <span className="visually-hidden"> ({updating})</span>
        </span>
      )}
    </div>
  );
}

export function Teleoperation(props: { view: RobotView }) {
  const teleop = props.view.teleoperation;
  if (!teleop.active) return <span className="muted">—</span>;
  return (
    <span className={`badge teleop${teleop.confirmed ? '' : ' unconfirmed'}`} data-testid="teleop-badge">
      {teleop.operatorAddress ?? 'unknown operator'}
      {' · '}
      <Age at={parseTime(teleop.since)} />
      {!teleop.confirmed && ' · unconfirmed'}
    </span>
  );
}

function MetricCell(props: { column: string; view: RobotView; field: (typeof NUMERIC_COLUMNS)[number]['field'] }) {
  const value = metricOf(props.view.telemetry, props.field);
  if (!value) {
    return (
      <div role="gridcell" data-col={props.column} className="num">
        <span className="muted">—</span>
      </div>
    );
  }
  return (
    <div role="gridcell" data-col={props.column} className="num">
      <StaleAware view={props.view} value={value}>
        {formatMetric(props.field, value.value)}
      </StaleAware>
    </div>
  );
}

function VersionCell(props: { view: RobotView; field: 'agentVersion' | 'lerobotVersion' }) {
  const value = metricOf(props.view.telemetry, props.field);
  if (!value) return <span className="muted">—</span>;
  return <span title={`reported ${formatTime(value.sampledAt, Date.now())}`}>{String(value.value)}</span>;
}

/** A value and its age, greyed (and titled "stale") once the value is stale; re-renders with the shared clock. */
function StaleAware(props: { view: RobotView; value: { sampledAt: string; ageMs: number; stale: boolean }; children: ReactNode }) {
  const now = useNow();
  const stale = isValueStale(props.view, props.value, now);
  return (
    <span className={stale ? 'value stale-value' : 'value live-value'} title={stale ? 'stale value' : undefined}>
      {props.children}
      <span className="age"> · {formatDuration(valueAgeMs(props.value, now))}</span>
    </span>
  );
}
