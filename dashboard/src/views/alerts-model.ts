import type { ActiveAlertView } from '../../../schemas/index.js';
import type { FleetSnapshot } from '../contracts.js';
import { parseTime } from './format.js';

export interface AlertRow {
  readonly robotId: string;
  readonly alert: ActiveAlertView;
  readonly raisedAt: number;
}

/** Every open alert of the fleet, newest first (ties: critical first, then robot id). Pure. */
export function openAlerts(robots: FleetSnapshot['robots']): AlertRow[] {
  const rows: AlertRow[] = [];
  for (const robot of robots.values())
    for (const alert of robot.alerts) rows.push({ robotId: robot.robotId, alert, raisedAt: parseTime(alert.raisedAt) ?? 0 });
  return rows.sort(
    (a, b) =>
      b.raisedAt - a.raisedAt ||
      (a.alert.severity === b.alert.severity ? 0 : a.alert.severity === 'critical' ? -1 : 1) ||
      a.robotId.localeCompare(b.robotId),
  );
}
