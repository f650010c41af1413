import { useMemo } from 'react';
import type { FleetSnapshot, Route } from '../contracts.js';
import { useNow } from './clock.js';
import { openAlerts } from './alerts-model.js';
import { formatDuration, formatMetricValue, formatTime, metricLabel } from './format.js';

/** At most this many rows in the DOM; the count says how many there are in all. */
const MAX_ROWS = 2_000;

export function AlertsView(props: { snapshot: FleetSnapshot; navigate: (route: Route) => void }) {
  const { snapshot, navigate } = props;
  const now = useNow();
  const rows = useMemo(() => openAlerts(snapshot.robots), [snapshot.robots]);
  const critical = rows.filter((row) => row.alert.severity === 'critical').length;
  return (
    <section aria-labelledby="alerts-view-title" className="alerts-view">
      <div className="toolbar">
        <h1 id="alerts-view-title" className="view-title">
          Open alerts
        </h1>
        <span className="row-count" data-testid="alert-count">
          {rows.length} open · {critical} critical · {rows.length - critical} warning
        </span>
      </div>
      {!snapshot.loaded && <p className="muted">Loading…</p>}
      {snapshot.loaded && rows.length === 0 && <p className="muted">No open alerts. Every robot is within its thresholds.</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table className="alerts-table">
            <caption className="visually-hidden">Open alerts, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Robot</th>
                <th scope="col">Severity</th>
                <th scope="col">Metric</th>
                <th scope="col">Value</th>
                <th scope="col">Threshold</th>
                <th scope="col">Raised</th>
                <th scope="col">Open for</th>
              </tr>
            </thead>
            <tbody>
              {rows.slice(0, MAX_ROWS).map((row) => (
                <tr
                  key={`${row.robotId}/${row.alert.metric}`}
                  data-testid="alert-row"
                  data-robot-id={row.robotId}
                  data-severity={row.alert.severity}
                  data-metric={row.alert.metric}
                  className={`sev-row-${row.alert.severity}`}
                >
                  <td>
                    <a
                      className="mono"
                      href={`/robots/${encodeURIComponent(row.robotId)}`}
                      onClick={(event) => {
                        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
                        event.preventDefault();
                        navigate({ view: 'robot', robotId: row.robotId });
                      }}
                    >
                      {row.robotId}
                    </a>
                  </td>
                  <td>
                    <span className={`badge sev-${row.alert.severity}`}>{row.alert.severity}</span>
                  </td>
                  <td>{metricLabel(row.alert.metric)}</td>
                  <td className="num live-value">{formatMetricValue(row.alert.metric, row.alert.value)}</td>
                  <td className="num">{formatMetricValue(row.alert.metric, row.alert.threshold)}</td>
                  <td>{formatTime(row.alert.raisedAt, now)}</td>
                  <td className="live-value">{formatDuration(now - row.raisedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {rows.length > MAX_ROWS && (
            <p className="muted">
              Showing the newest {MAX_ROWS} of {rows.length}; filter the fleet by alert severity to see the others by robot.
            </p>
          )}
        </div>
      )}
    </section>
  );
}
