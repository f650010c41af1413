/**
 * `npm run bench:dashboard [-- --robots 2000 --duration 120 --events-per-second 20]`: the BUILT dashboard
 * (dashboard/dist, built first when older than its sources, as `npm start` does; `--dist <dir>` for another) in
 * headless Chromium (Debian's, through playwright-core), fed by bench/dashboard-feed.ts: a fleet of --robots robots
 * each sampling once a second (coalesced by the feed into a round of `RobotsUpdated` messages a second, as the live
 * API does for a dashboard's `"telemetry":"1s"` subscription), plus --events-per-second domain events (alerts,
 * teleoperations) as single live messages.
 *
 * Measured in the page (an init script runs before the dashboard's code):
 * - message arrival → painted row: each WebSocket message is stamped (performance.now()) as it is dispatched; a
 *   MutationObserver sees each rendered row's `data-updated-at` change (the DOM contract: the page time its view last
 *   changed) and the next animation frame after it stamps "painted" (an upper bound: at most a frame late). The
 *   feed's log of which robots each message carried pairs a row change with the last message for that robot that
 *   arrived before the view changed. Only rendered rows are measured (the table is virtualised). Also printed: feed
 *   send → painted across the two processes (epoch clocks of one machine).
 * - long tasks (PerformanceObserver 'longtask'): while loading the 2,000 robots, and in the steady state;
 * - frame times while the table scrolls from top to bottom (rAF deltas; the scroll moves a fixed step per frame);
 * - JS heap growth over --duration seconds of the feed (CDP: HeapProfiler.collectGarbage, then Runtime.getHeapUsage);
 * - rows in the DOM against the rows that fit the table's viewport;
 * - the bundle's initial JavaScript, gzipped (index.html's module script and modulepreload links, zlib level 9).
 *
 * The aims are printed beside the figures; nothing is asserted (a shared 2-core machine: read ranges over runs).
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { CDPSession } from 'playwright-core';
import { ensureDashboardBuilt } from '../local/dashboard-build.js';
import { launchBrowser, openPage } from '../test/support/browser.js';
import { ROOT, waitFor } from '../test/support/local-cloud-process.js';
import { startDashboardFeed, type FeedConnection } from './dashboard-feed.js';

const { values } = parseArgs({
  options: {
    robots: { type: 'string', default: '2000' },
    duration: { type: 'string', default: '120' },
    'events-per-second': { type: 'string', default: '20' },
    'warmup-seconds': { type: 'string', default: '10' },
    'scroll-step': { type: 'string', default: '102' },
    /** Another build to measure; by default dashboard/dist, built first when older than its sources. */
    dist: { type: 'string' },
  },
});
const ROBOTS = Number(values.robots);
const DURATION_S = Number(values.duration);
const WARMUP_S = Number(values['warmup-seconds']);
const SCROLL_STEP = Number(values['scroll-step']);
const DIST = values.dist ?? join(ROOT, 'dashboard', 'dist');

/** In the page, before the dashboard: stamps, long tasks, row changes. Written as a string (no DOM types here). */
const PAGE_PROBE = `
(() => {
  const probe = { sockets: [], rows: [], longTasks: [], recording: false };
  window.__bench = probe;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const socket = { arrivals: [], closed: false };
      probe.sockets.push(socket);
      this.addEventListener('message', () => socket.arrivals.push(performance.now()));
      this.addEventListener('close', () => { socket.closed = true; });
    }
  };
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) probe.longTasks.push([entry.startTime, entry.duration]);
    }).observe({ type: 'longtask', buffered: true });
  } catch (error) { probe.longTaskError = String(error); }
  const last = new Map();
  let pending = [];
  let scheduled = false;
  const flush = () => {
    const paintedAt = performance.now();
    for (const change of pending) probe.rows.push([change[0], change[1], paintedAt]);
    pending = [];
    scheduled = false;
  };
  const seed = (node) => {
    if (node.nodeType !== 1) return;
    const rows = node.matches('[role="row"][data-robot-id]') ? [node] : node.querySelectorAll('[role="row"][data-robot-id]');
    for (const row of rows) last.set(row.getAttribute('data-robot-id'), Number(row.getAttribute('data-updated-at')));
  };
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === 'childList') { record.addedNodes.forEach(seed); continue; }
      const row = record.target;
      const id = row.getAttribute('data-robot-id');
      const updatedAt = Number(row.getAttribute('data-updated-at'));
      if (!id || !Number.isFinite(updatedAt)) continue;
      const before = last.get(id);
      last.set(id, updatedAt);
      if (!probe.recording || before === undefined || updatedAt <= before) continue;
      pending.push([id, updatedAt]);
    }
    if (pending.length > 0 && !scheduled) { scheduled = true; requestAnimationFrame(flush); }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-updated-at'] });
})();
`;

/** Scrolls the table's scroll container from top to bottom, a fixed step per frame; returns the frame deltas. */
const SCROLL_END_TO_END = (step: number) => `
new Promise((resolve, reject) => {
  const grid = document.querySelector('[role="grid"]');
  if (!grid) return reject(new Error('no [role="grid"]'));
  const scrollable = (element) => element.scrollHeight > element.clientHeight + 1 && /(auto|scroll)/.test(getComputedStyle(element).overflowY);
  let scroller = [grid, ...grid.querySelectorAll('*')].find(scrollable);
  for (let element = grid.parentElement; !scroller && element; element = element.parentElement) if (scrollable(element)) scroller = element;
  scroller = scroller || document.scrollingElement;
  scroller.scrollTop = 0;
  const deltas = [];
  let maxRows = 0;
  let previous = null;
  const frame = (now) => {
    if (previous !== null) deltas.push(now - previous);
    previous = now;
    maxRows = Math.max(maxRows, document.querySelectorAll('[role="row"][data-robot-id]').length);
    if (scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 1) {
      const rows = document.querySelectorAll('[role="row"][data-robot-id]');
      resolve({ deltas, maxRows, lastRow: rows.length ? rows[rows.length - 1].getAttribute('data-robot-id') : null, scrollHeight: scroller.scrollHeight });
      return;
    }
    scroller.scrollTop += ${step};
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})
`;

/** Rows in the DOM and how many fit the table's viewport. */
const ROW_COUNTS = `
(() => {
  const rows = [...document.querySelectorAll('[role="row"][data-robot-id]')];
  const grid = document.querySelector('[role="grid"]');
  const scrollable = (element) => element.scrollHeight > element.clientHeight + 1 && /(auto|scroll)/.test(getComputedStyle(element).overflowY);
  const scroller = [grid, ...grid.querySelectorAll('*')].find(scrollable) || grid;
  const rowHeight = rows.length ? rows[0].getBoundingClientRect().height : 0;
  return { inDom: rows.length, visible: rowHeight ? Math.ceil(scroller.clientHeight / rowHeight) : 0, rowHeight, viewport: scroller.clientHeight };
})()
`;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const ms = (value: number) => `${value.toFixed(1)} ms`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');

/** The gzipped size of the initial JavaScript: index.html's module scripts and modulepreload links. */
async function bundleSize(dist: string): Promise<{ files: { file: string; raw: number; gzip: number }[]; gzip: number }> {
  const html = await readFile(join(dist, 'index.html'), 'utf8');
  const urls = new Set<string>();
  for (const match of html.matchAll(/<script\b[^>]*\bsrc="([^"]+)"/g)) urls.add(match[1]!);
  for (const match of html.matchAll(/<link\b[^>]*\brel="modulepreload"[^>]*\bhref="([^"]+)"/g)) urls.add(match[1]!);
  for (const match of html.matchAll(/<link\b[^>]*\bhref="([^"]+)"[^>]*\brel="modulepreload"/g)) urls.add(match[1]!);
  const files = [];
  for (const url of urls) {
    const content = await readFile(join(dist, url.replace(/^\//, '')));
    files.push({ file: url, raw: content.length, gzip: gzipSync(content, { level: 9 }).length });
  }
  return { files, gzip: files.reduce((sum, file) => sum + file.gzip, 0) };
}

interface RowChange {
  readonly robotId: string;
  readonly updatedAt: number;
  readonly paintedAt: number;
}

/**
 * Pairs each row change with the message that brought it: the last message carrying that robot that the page had
 * received by the time the view changed. Returns arrival → painted and feed send → painted, in ms.
 */
function latencies(changes: RowChange[], arrivals: number[], connection: FeedConnection, timeOrigin: number) {
  const byRobot = new Map<string, number[]>();
  const count = Math.min(arrivals.length, connection.sent.length);
  for (let index = 0; index < count; index += 1) {
    for (const robotId of connection.sent[index]!.robotIds) {
      let list = byRobot.get(robotId);
      if (!list) byRobot.set(robotId, (list = []));
      list.push(index);
    }
  }
  const arrivalToPaint: number[] = [];
  const sendToPaint: number[] = [];
  let unmatched = 0;
  for (const change of changes) {
    const list = byRobot.get(change.robotId) ?? [];
    let low = 0;
    let high = list.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (arrivals[list[middle]!]! <= change.updatedAt) {
        found = list[middle]!;
        low = middle + 1;
      } else high = middle - 1;
    }
    if (found < 0) {
      unmatched += 1;
      continue;
    }
    arrivalToPaint.push(change.paintedAt - arrivals[found]!);
    sendToPaint.push(timeOrigin + change.paintedAt - connection.sent[found]!.sentAt);
  }
  return { arrivalToPaint: arrivalToPaint.sort((a, b) => a - b), sendToPaint: sendToPaint.sort((a, b) => a - b), unmatched };
}

/** The page's main-thread time so far (CDP Performance metrics, seconds) and when it was read. */
async function mainThreadBusy(cdp: CDPSession): Promise<{ at: number; task: number; script: number; layout: number; style: number }> {
  const { metrics } = await cdp.send('Performance.getMetrics');
  const value = (name: string) => metrics.find((metric) => metric.name === name)?.value ?? 0;
  return { at: value('Timestamp'), task: value('TaskDuration'), script: value('ScriptDuration'), layout: value('LayoutDuration'), style: value('RecalcStyleDuration') };
}

async function main(): Promise<void> {
  if (values.dist === undefined) {
    await ensureDashboardBuilt({ root: ROOT }, (reason) => console.log(`bench:dashboard: building the dashboard first (${reason})…`));
  }
  const bundle = await bundleSize(DIST).catch((error: unknown) => {
    throw new Error(`Could not read the built dashboard in ${DIST} (${String(error)}): build it (vite build --config dashboard/vite.config.ts) or pass --dist`);
  });
  const feed = await startDashboardFeed({ distDir: DIST, robots: ROBOTS, eventsPerSecond: Number(values['events-per-second']) });
  const browser = await launchBrowser(['--enable-precise-memory-info']);
  try {
    const { page, errors } = await openPage(browser, { initScripts: [PAGE_PROBE] });
    const cdp = await page.context().newCDPSession(page);
    const loadStart = performance.now();
    await page.goto(feed.url);
    await page.locator('[data-testid="row-count"]', { hasText: `${ROBOTS} of ${ROBOTS}` }).waitFor({ timeout: 120_000 });
    await page.locator('[role="row"][data-robot-id]').first().waitFor();
    const loadedMs = performance.now() - loadStart;
    await waitFor(() => feed.connections.some((connection) => connection.rate !== null), { timeoutMs: 30_000, what: 'the page to subscribe' });
    const subscribed = feed.connections.find((connection) => connection.rate !== null)!;
    const loadTasks = (await page.evaluate('window.__bench.longTasks.map((task) => task[1])')) as number[];
    const loadTaskCount = loadTasks.length;

    // Warm up (the first rounds, JIT), then measure from a collected heap.
    await new Promise((resolve) => setTimeout(resolve, WARMUP_S * 1000));
    await cdp.send('HeapProfiler.enable');
    await cdp.send('Performance.enable');
    const busyBefore = await mainThreadBusy(cdp);
    await cdp.send('HeapProfiler.collectGarbage');
    const heapBefore = (await cdp.send('Runtime.getHeapUsage')).usedSize;
    const steadyFrom = (await page.evaluate('window.__bench.recording = true; window.__bench.longTasks.length')) as number;
    console.log(`bench:dashboard: ${ROBOTS} robots loaded in ${ms(loadedMs)}; measuring for ${DURATION_S} s (feed rate ${subscribed.rate})…`);
    await new Promise((resolve) => setTimeout(resolve, DURATION_S * 1000));
    await page.evaluate('window.__bench.recording = false');
    const busyAfter = await mainThreadBusy(cdp);
    const load = loadavg();
    await cdp.send('HeapProfiler.collectGarbage');
    const heapAfter = (await cdp.send('Runtime.getHeapUsage')).usedSize;

    const timeOrigin = (await page.evaluate('performance.timeOrigin')) as number;
    const probe = (await page.evaluate(
      '({ sockets: window.__bench.sockets.map((socket) => ({ arrivals: socket.arrivals, closed: socket.closed })), rows: window.__bench.rows, longTasks: window.__bench.longTasks, longTaskError: window.__bench.longTaskError })',
    )) as { sockets: { arrivals: number[]; closed: boolean }[]; rows: [string, number, number][]; longTasks: [number, number][]; longTaskError?: string };
    const rowCounts = (await page.evaluate(ROW_COUNTS)) as { inDom: number; visible: number; rowHeight: number; viewport: number };

    const socketIndex = feed.connections.indexOf(subscribed);
    const arrivals = probe.sockets[socketIndex]?.arrivals ?? [];
    const changes = probe.rows.map(([robotId, updatedAt, paintedAt]) => ({ robotId, updatedAt, paintedAt }));
    const latency = latencies(changes, arrivals, subscribed, timeOrigin);
    const steadyTasks = probe.longTasks.slice(steadyFrom).map((task) => task[1]);
    const longestSteady = Math.max(0, ...steadyTasks);
    const longestLoad = Math.max(0, ...loadTasks);

    const scroll = (await page.evaluate(SCROLL_END_TO_END(SCROLL_STEP))) as { deltas: number[]; maxRows: number; lastRow: string | null; scrollHeight: number };
    const frames = [...scroll.deltas].sort((a, b) => a - b);
    const scrollTasks = ((await page.evaluate('window.__bench.longTasks.map((task) => task[1])')) as number[]).slice(steadyFrom + steadyTasks.length);

    const growth = heapAfter - heapBefore;
    const p95 = percentile(latency.arrivalToPaint, 95);
    console.log('');
    console.log(`bench:dashboard — ${ROBOTS} robots × 1 sample/s, ${values['events-per-second']} events/s, ${DURATION_S} s measured (Chromium ${browser.version()}, headless)`);
    const busy = (key: keyof typeof busyAfter) => `${((100 * (busyAfter[key] - busyBefore[key])) / (busyAfter.at - busyBefore.at)).toFixed(0)} %`;
    console.log(`  machine load average ${load.map((value) => value.toFixed(1)).join(' / ')} on ${availableParallelism()} cores; the page's main thread busy ${busy('task')} of the time (script ${busy('script')}, layout ${busy('layout')}, style ${busy('style')})`);
    console.log(`  feed: ${feed.stats.rounds} rounds, ${feed.stats.messages} messages, ${mb(feed.stats.bytes)} sent, ${feed.stats.events} domain events; connections ${feed.connections.length}`);
    console.log(`  message arrival → painted row (in the page, ${latency.arrivalToPaint.length} row updates, ${latency.unmatched} unmatched): p50 ${ms(percentile(latency.arrivalToPaint, 50))}, p95 ${ms(p95)}, max ${ms(latency.arrivalToPaint.at(-1) ?? Number.NaN)}   aim p95 ≤ 250 ms: ${verdict(p95 <= 250)}`);
    console.log(`  feed send → painted row (across processes): p50 ${ms(percentile(latency.sendToPaint, 50))}, p95 ${ms(percentile(latency.sendToPaint, 95))}`);
    console.log(`  longest task: steady state ${ms(longestSteady)} (${steadyTasks.length} long tasks), while scrolling ${ms(Math.max(0, ...scrollTasks))} (${scrollTasks.length}), initial load ${ms(longestLoad)} (${loadTaskCount})   aim none > 100 ms in use: ${verdict(Math.max(longestSteady, ...scrollTasks) <= 100)}${probe.longTaskError ? ` [longtask observer: ${probe.longTaskError}]` : ''}`);
    console.log(`  frames while scrolling ${ROBOTS} rows end to end (${frames.length} frames, ${SCROLL_STEP} px each): p50 ${ms(percentile(frames, 50))}, p95 ${ms(percentile(frames, 95))}, max ${ms(frames.at(-1) ?? Number.NaN)}; last row ${scroll.lastRow}`);
    console.log(`  JS heap: ${mb(heapBefore)} → ${mb(heapAfter)} after GC, growth ${mb(growth)} over ${DURATION_S} s   aim < 20 MB: ${verdict(growth < 20 * 1024 * 1024)}`);
    console.log(`  rows in the DOM: ${rowCounts.inDom} (at most ${scroll.maxRows} while scrolling); ${rowCounts.visible} fit the ${rowCounts.viewport}px viewport at ${rowCounts.rowHeight}px   aim ≈ visible + overscan: ${verdict(scroll.maxRows <= rowCounts.visible + 30)}`);
    console.log(`  bundle, initial JS: ${(bundle.gzip / 1024).toFixed(1)} kB gzipped (${bundle.files.map((file) => `${file.file} ${(file.raw / 1024).toFixed(0)} kB → ${(file.gzip / 1024).toFixed(1)} kB`).join(', ')})   aim ≤ 250 kB: ${verdict(bundle.gzip <= 250 * 1024)}`);
    console.log(`  initial load: ${ms(loadedMs)} from navigation to "${ROBOTS} of ${ROBOTS} robots"`);
    if (errors.length > 0) console.log(`  page errors: ${errors.slice(0, 5).join(' | ')}${errors.length > 5 ? ` (+${errors.length - 5})` : ''}`);
  } finally {
    await browser.close();
    await feed.close();
  }
}

await main();
