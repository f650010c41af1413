import { useEffect, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { ApiClient, FleetStore } from '../contracts.js';
import { describeFailure } from './bulk.js';
import { appendPoint, CHART_METRICS, pointOfView, seriesOf, type ChartMetric, type ChartPoint, type ChartSeries } from './chart-data.js';
import { metricLabel } from './format.js';

const HISTORY_MS = 3_600_000;
const UNITS: Record<ChartMetric, string> = { cpuTemperatureC: '°C', cpuPercent: '%', memoryPercent: '%', diskPercent: '%' };
const COLOURS: Record<ChartMetric, string> = {
  cpuTemperatureC: '#b3261e',
  cpuPercent: '#1f5fae',
  memoryPercent: '#6b3fa0',
  diskPercent: '#2d6a3e',
};

/**
 * The robot's telemetry charts (uPlot, loaded lazily): the last hour from the history API, then every live sample
 * from the store; at most MAX_POINTS points each. Live samples that arrive while the history loads are kept and
 * appended after it.
 */
export default function TelemetryCharts(props: { robotId: string; api: ApiClient; store: FleetStore }) {
  const { robotId, api, store } = props;
  const series = useRef<ChartSeries | null>(null);
  const charts = useRef(new Map<ChartMetric, uPlot>());
  const [state, setState] = useState<{ loading: boolean; error: string | null; points: number }>({ loading: true, error: null, points: 0 });

  useEffect(() => {
    const controller = new AbortController();
    const early: ChartPoint[] = [];
    series.current = null;
    let frame: number | null = null;
    const redraw = () => {
      frame = null;
      const data = series.current;
      if (!data) return;
      for (const [metric, chart] of charts.current) chart.setData([data.x, data.y[metric]]);
      setState((s) => (s.points === data.x.length && !s.loading ? s : { loading: false, error: s.error, points: data.x.length }));
    };
    const stop = store.onTelemetry(robotId, (robot) => {
      const point = robot.telemetry ? pointOfView(robot.telemetry) : null;
      if (!point) return;
      if (!series.current) {
        early.push(point);
        return;
      }
      if (appendPoint(series.current, point) && frame === null) frame = requestAnimationFrame(redraw);
    });
    api.telemetry(robotId, { from: new Date(Date.now() - HISTORY_MS) }, controller.signal).then(
      (history) => {
        series.current = seriesOf(history.samples, early);
        redraw();
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        series.current = seriesOf([], early);
        redraw();
        setState((s) => ({ ...s, loading: false, error: `Could not read the last hour: ${describeFailure(error)}` }));
      },
    );
    return () => {
      controller.abort();
      stop();
      if (frame !== null) cancelAnimationFrame(frame);
    };
  }, [api, store, robotId]);

  return (
    <>
      {state.error && (
        <p role="alert" className="error">
          {state.error}
        </p>
      )}
      <p className="muted small" aria-live="polite">
        {state.loading ? 'Loading the last hour…' : `${state.points} samples`}
      </p>
      <div className="charts">
        {CHART_METRICS.map((metric) => (
          <Chart key={metric} metric={metric} series={series} charts={charts.current} />
        ))}
      </div>
    </>
  );
}

function Chart(props: { metric: ChartMetric; series: { current: ChartSeries | null }; charts: Map<ChartMetric, uPlot> }) {
  const { metric, charts } = props;
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const data = props.series.current;
    const chart = new uPlot(
      {
        width: Math.max(200, element.clientWidth),
        height: 150,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [
          { stroke: '#333', grid: { stroke: '#e4e4e4' }, ticks: { stroke: '#bbb' } },
          { stroke: '#333', grid: { stroke: '#e4e4e4' }, ticks: { stroke: '#bbb' }, size: 58, values: (_u, values) => values.map((v) => `${v}${UNITS[metric] === '%' ? '%' : '°'}`) },
        ],
        series: [{}, { label: metricLabel(metric), stroke: COLOURS[metric], width: 1.5, spanGaps: true, points: { show: false } }],
      },
      [data ? data.x : [], data ? data.y[metric] : []],
      element,
    );
    charts.set(metric, chart);
    const resize = new ResizeObserver(() => chart.setSize({ width: Math.max(200, element.clientWidth), height: 150 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      charts.delete(metric);
      chart.destroy();
    };
  }, [metric, charts]);
  return (
    <figure className="chart" data-testid={`chart-${metric}`} data-metric={metric}>
      <figcaption>
        {metricLabel(metric)} ({UNITS[metric]})
      </figcaption>
      <div ref={host} className="chart-canvas" role="img" aria-label={`${metricLabel(metric)} over the last hour`} />
    </figure>
  );
}
