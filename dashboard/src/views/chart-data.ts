import type { TelemetrySample, TelemetryView } from '../../../schemas/index.js';
import { parseTime } from './format.js';

/**
 * The robot page's chart data: one shared time axis (seconds, as uPlot wants) and one column per metric, oldest
 * first. Invariants: times strictly increase (a sample not newer than the last one is dropped, so the history and
 * the live feed may overlap); at most MAX_POINTS points (the oldest go first); a metric a sample did not carry is null
 * at that time (a gap, drawn spanned).
 */
export const CHART_METRICS = ['cpuTemperatureC', 'cpuPercent', 'memoryPercent', 'diskPercent'] as const;
export type ChartMetric = (typeof CHART_METRICS)[number];
export const MAX_POINTS = 3_600;

export interface ChartSeries {
  readonly x: number[];
  readonly y: Record<ChartMetric, (number | null)[]>;
}

export function emptySeries(): ChartSeries {
  return { x: [], y: { cpuTemperatureC: [], cpuPercent: [], memoryPercent: [], diskPercent: [] } };
}

export interface ChartPoint {
  readonly at: number; // epoch ms
  readonly values: Partial<Record<ChartMetric, number>>;
}

/** Appends a point if it is newer than the last; trims to MAX_POINTS. Returns whether the series changed. */
export function appendPoint(series: ChartSeries, point: ChartPoint): boolean {
  const t = point.at / 1000;
  const last = series.x[series.x.length - 1];
  if (last !== undefined && t <= last) return false;
  series.x.push(t);
  for (const metric of CHART_METRICS) series.y[metric].push(point.values[metric] ?? null);
  const excess = series.x.length - MAX_POINTS;
  if (excess > 0) {
    series.x.splice(0, excess);
    for (const metric of CHART_METRICS) series.y[metric].splice(0, excess);
  }
  return true;
}

export function pointOfSample(sample: TelemetrySample): ChartPoint | null {
  const at = parseTime(sample.sampledAt);
  if (at === null) return null;
  const values: Partial<Record<ChartMetric, number>> = {};
  for (const metric of CHART_METRICS) {
    const value = sample[metric];
    if (typeof value === 'number') values[metric] = value;
  }
  return { at, values };
}

/**
 * The newest sample inside a merged TelemetryView (what a live RobotTelemetry carries): only the metrics whose own
 * sampledAt is the view's, since the others are older values kept by the merge.
 */
export function pointOfView(telemetry: TelemetryView): ChartPoint | null {
  const at = parseTime(telemetry.sampledAt);
  if (at === null) return null;
  const values: Partial<Record<ChartMetric, number>> = {};
  for (const metric of CHART_METRICS) {
    const own = telemetry.metrics[metric];
    const value = own ? own.value : telemetry[metric];
    const sampledAt = own ? own.sampledAt : telemetry.sampledAt;
    if (typeof value === 'number' && parseTime(sampledAt) === at) values[metric] = value;
  }
  return { at, values };
}

/** History (oldest first) then the live points that came while it loaded. */
export function seriesOf(history: readonly TelemetrySample[], live: readonly ChartPoint[]): ChartSeries {
  const series = emptySeries();
  for (const sample of history) {
    const point = pointOfSample(sample);
    if (point) appendPoint(series, point);
  }
  for (const point of live) appendPoint(series, point);
  return series;
}
