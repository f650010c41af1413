import type { AlertSeverity, TelemetryMetric } from '../../schemas/index.js';

/**
 * Telemetry thresholds, in one place. An alert is raised when a metric reaches `raiseAt` and cleared only once it
 * falls below `clearBelow`: the gap between the two (hysteresis) keeps a value hovering at the line from raising and
 * clearing on every sample.
 */
export interface AlertThreshold {
  readonly severity: AlertSeverity;
  readonly raiseAt: number;
  readonly clearBelow: number;
}

export const ALERT_THRESHOLDS: Readonly<Partial<Record<TelemetryMetric, AlertThreshold>>> = {
  cpuTemperatureC: { severity: 'critical', raiseAt: 80, clearBelow: 75 },
  diskPercent: { severity: 'warning', raiseAt: 90, clearBelow: 85 },
  memoryPercent: { severity: 'warning', raiseAt: 90, clearBelow: 85 },
};

export type AlertChange = 'raise' | 'clear' | 'none';

export function alertChange(threshold: AlertThreshold, value: number, active: boolean): AlertChange {
  if (!active && value >= threshold.raiseAt) return 'raise';
  if (active && value < threshold.clearBelow) return 'clear';
  return 'none';
}
