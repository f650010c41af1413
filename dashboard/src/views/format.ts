/**
 * Pure formatting of times, ages and values for the views. No React, no clock of its own: every function that needs
 * "now" takes it, so the same input always gives the same text (and the unit tests need no fake timers).
 */

/** "0 s", "45 s", "5 min", "2 h 5 min", "3 d 4 h": coarse enough to read at a glance, exact enough to act on. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 24) return min % 60 === 0 ? `${h} h` : `${h} h ${min % 60} min`;
  const d = Math.floor(h / 24);
  return h % 24 === 0 ? `${d} d` : `${d} d ${h % 24} h`;
}

/** Milliseconds since the epoch of an ISO time, or null when there is none or it does not parse. */
export function parseTime(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
}

/** "14:03:07" today, "2026-11-30 14:03" on another day: the page's local time. */
export function formatTime(iso: string | null | undefined, now: number): string {
  const t = parseTime(iso);
  if (t === null) return '—';
  const date = new Date(t);
  const today = new Date(now);
  const pad = (n: number) => String(n).padStart(2, '0');
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (date.toDateString() === today.toDateString()) return clock;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A metric's value for a cell: "71.5 °C", "42 %"; "—" when the robot never sent it. */
export function formatMetric(field: NumericField, value: number | string | undefined): string {
  if (value === undefined || value === null) return '—';
  if (typeof value === 'string') return value;
  switch (field) {
    case 'cpuTemperatureC':
      return `${value.toFixed(1)} °C`;
    case 'cpuPercent':
    case 'memoryPercent':
    case 'diskPercent':
      return `${value < 10 ? value.toFixed(1) : Math.round(value)} %`;
  }
}

export type NumericField = 'cpuTemperatureC' | 'cpuPercent' | 'memoryPercent' | 'diskPercent';

/** The human name of a telemetry metric, as alerts and charts title it. */
export function metricLabel(metric: string): string {
  switch (metric) {
    case 'cpuTemperatureC':
      return 'CPU temperature';
    case 'cpuPercent':
      return 'CPU';
    case 'memoryPercent':
      return 'Memory';
    case 'diskPercent':
      return 'Disk';
    default:
      return metric;
  }
}

/** "512 B", "4.2 kB", "31.5 MB", "1.2 GB" (powers of 1024). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1024) return `${Math.max(0, Math.round(bytes))} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** A value with its metric's unit, for alerts ("86.0 °C ≥ 85 °C"). */
export function formatMetricValue(metric: string, value: number): string {
  if (metric === 'cpuTemperatureC') return `${value.toFixed(1)} °C`;
  if (metric.endsWith('Percent')) return `${value.toFixed(1)} %`;
  return String(value);
}
