import { createHash } from 'node:crypto';

/**
 * The local cloud's one page: the fleet as `GET /robots` lists it (every cursor page), kept current over the
 * WebSocket API (`subscribe` to `["*"]`; each live message for a robot re-fetches `GET /robots/{id}` until the read
 * model has caught up with it), with the connection state and reconnection with backoff. No framework, no external
 * assets; data reaches the DOM through `textContent` only, and the page's own Content-Security-Policy allows just its
 * inline script and style (by hash) and connections to the two APIs.
 *
 * The caller embeds a bearer token (a dev operator token). That is acceptable for the LOCAL cloud only, whose page
 * is served on loopback to the developer who owns the token; a deployed dashboard signs users in through Cognito.
 */

export interface LivePageOptions {
  /** The API root the page calls, `/api/v2` (same origin) or `http://localhost:3000/api/v2`. */
  readonly apiBaseUrl: string;
  /** Where the WebSocket API listens, `ws://localhost:3001` or `ws://localhost:3001/live`; `?token=` is added. */
  readonly webSocketUrl: string;
  /** A bearer token with the operator role (local dev token; see above). */
  readonly token: string;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1f23; background: #fafbfc; }
h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
header p { margin: .2rem 0; }
#connection { font-weight: 600; }
#connection.live { color: #1a7f37; }
#connection.down { color: #b35900; }
#error { color: #b31d28; min-height: 1.2em; }
table { border-collapse: collapse; width: 100%; margin-top: .75rem; background: #fff; }
th, td { border-bottom: 1px solid #e1e4e8; padding: .3rem .5rem; text-align: left; white-space: nowrap; }
th { background: #f0f2f4; position: sticky; top: 0; }
td.online { color: #1a7f37; font-weight: 600; }
td.offline { color: #6a737d; }
td.alerting { color: #b31d28; font-weight: 600; }
td.stale { color: #6a737d; font-style: italic; }
tr.changed td { background: #fff8c5; }
`;

/**
 * The page's behaviour. Plain ES2017 in a browser; it reads its settings from the JSON block `#live-config` and
 * touches the DOM with createElement, appendChild, insertBefore, removeChild, textContent and className only.
 */
const SCRIPT = `
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('live-config').textContent);
  var tbody = document.getElementById('robots');
  var stateView = document.getElementById('connection');
  var countView = document.getElementById('count');
  var errorView = document.getElementById('error');
  var lastEventView = document.getElementById('last-event');
  var COLUMNS = ['robotId', 'model', 'status', 'lifecycle', 'lastSeen', 'teleoperation', 'cpuTemperature', 'cpu', 'memory', 'disk', 'alerts'];
  var rows = new Map();
  var order = [];
  var wanted = new Map();
  var refreshing = new Set();
  var socket = null;
  var attempt = 0;
  var keepAlive = null;
  var loadedSinceOpen = false;

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function setState(text, kind) {
    stateView.textContent = text;
    stateView.className = kind || '';
  }

  function showError(error) {
    errorView.textContent = error ? String(error && error.message ? error.message : error) : '';
  }

  async function api(path) {
    var response = await fetch(config.apiBaseUrl + path, {
      headers: { authorization: 'Bearer ' + config.token, accept: 'application/json' },
      cache: 'no-store'
    });
    if (response.status === 404) return null;
    if (response.status === 401) throw new Error('The API refused the token (401): it may have expired; restart the local cloud for a new page.');
    if (!response.ok) throw new Error('GET ' + path + ' answered ' + response.status);
    return response.json();
  }

  function percent(value) { return typeof value === 'number' ? value.toFixed(0) + ' %' : '–'; }
  function celsius(value) { return typeof value === 'number' ? value.toFixed(1) + ' °C' : '–'; }
  function time(value) { return value ? new Date(value).toLocaleString() : '–'; }
  function age(ms) {
    var seconds = Math.round(ms / 1000);
    if (seconds < 60) return seconds + ' s';
    if (seconds < 3600) return Math.round(seconds / 60) + ' min';
    if (seconds < 172800) return Math.round(seconds / 3600) + ' h';
    return Math.round(seconds / 86400) + ' d';
  }

  var METRIC_COLUMNS = { cpuTemperature: 'cpuTemperatureC', cpu: 'cpuPercent', memory: 'memoryPercent', disk: 'diskPercent' };

  /**
   * Telemetry is merged per metric, so each value has its own age (telemetry.metrics); a value is stale when the API
   * says so or the robot is offline (its last value, not a current one).
   */
  function metricCell(robot, field, format) {
    var telemetry = robot.telemetry || {};
    var value = telemetry[field];
    if (value === undefined || value === null) return { text: '–', stale: false };
    var info = telemetry.metrics && telemetry.metrics[field];
    var stale = robot.status !== 'online' || telemetry.stale === true || !!(info && info.stale);
    var text = format(value);
    if (info && typeof info.ageMs === 'number') text += ' · ' + age(info.ageMs) + ' ago';
    if (stale) text += ' (stale)';
    return { text: text, stale: stale };
  }

  function cellTexts(robot) {
    var teleoperation = robot.teleoperation || {};
    var alerts = Array.isArray(robot.alerts) ? robot.alerts : [];
    return {
      robotId: robot.robotId,
      model: robot.model,
      status: robot.status,
      lifecycle: robot.lifecycle,
      lastSeen: time(robot.lastSeenAt),
      teleoperation: teleoperation.active ? 'yes' + (teleoperation.operatorAddress ? ' (' + teleoperation.operatorAddress + ')' : '') : 'no',
      cpuTemperature: metricCell(robot, 'cpuTemperatureC', celsius).text,
      cpu: metricCell(robot, 'cpuPercent', percent).text,
      memory: metricCell(robot, 'memoryPercent', percent).text,
      disk: metricCell(robot, 'diskPercent', percent).text,
      alerts: String(alerts.length)
    };
  }

  function render(robot) {
    if (!robot || typeof robot.robotId !== 'string') return;
    var row = rows.get(robot.robotId);
    if (!row) {
      var tr = document.createElement('tr');
      var cells = {};
      COLUMNS.forEach(function (column) {
        var td = document.createElement('td');
        cells[column] = td;
        tr.appendChild(td);
      });
      row = { tr: tr, cells: cells };
      rows.set(robot.robotId, row);
      var index = 0;
      while (index < order.length && order[index] < robot.robotId) index++;
      var next = order[index];
      order.splice(index, 0, robot.robotId);
      if (next === undefined) tbody.appendChild(tr); else tbody.insertBefore(tr, rows.get(next).tr);
      countView.textContent = rows.size === 1 ? '1 robot' : rows.size + ' robots';
    }
    var texts = cellTexts(robot);
    COLUMNS.forEach(function (column) { row.cells[column].textContent = texts[column]; });
    row.cells.status.className = robot.status === 'online' ? 'online' : 'offline';
    row.cells.alerts.className = texts.alerts !== '0' ? 'alerting' : '';
    Object.keys(METRIC_COLUMNS).forEach(function (column) {
      row.cells[column].className = metricCell(robot, METRIC_COLUMNS[column], String).stale ? 'stale' : '';
    });
    row.lastSeq = robot.lastSeq;
    row.sampledAt = robot.telemetry ? Date.parse(robot.telemetry.sampledAt) || 0 : 0;
  }

  function forget(robotId) {
    var row = rows.get(robotId);
    if (!row) return;
    tbody.removeChild(row.tr);
    rows.delete(robotId);
    order.splice(order.indexOf(robotId), 1);
    countView.textContent = rows.size === 1 ? '1 robot' : rows.size + ' robots';
  }

  /** Every page of the list; robots no longer listed are dropped. */
  async function loadAll() {
    var listed = new Set();
    var cursor = null;
    var pages = 0;
    do {
      var page = await api('/robots?limit=500' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
      if (!page || !Array.isArray(page.items)) throw new Error('GET /robots answered something that is not a page of robots');
      page.items.forEach(function (robot) { listed.add(robot.robotId); render(robot); });
      cursor = typeof page.nextCursor === 'string' ? page.nextCursor : null;
      pages++;
    } while (cursor && pages < 10000);
    Array.from(rows.keys()).forEach(function (robotId) { if (!listed.has(robotId)) forget(robotId); });
    if (rows.size === 0) countView.textContent = '0 robots';
  }

  function caughtUp(robotId) {
    var row = rows.get(robotId);
    var need = wanted.get(robotId);
    return !need || (row && row.lastSeq >= need.seq && row.sampledAt >= need.sampledAt);
  }

  /**
   * The read model follows the live push within about a second: fetch until the robot has the pushed message's
   * sequence number (and sample), a few times with a growing pause, then leave it to the next message.
   */
  async function refresh(robotId) {
    if (refreshing.has(robotId)) return;
    refreshing.add(robotId);
    try {
      for (var tries = 0; tries < 6; tries++) {
        var robot = await api('/robots/' + encodeURIComponent(robotId));
        if (!robot) break;
        render(robot);
        if (caughtUp(robotId)) { wanted.delete(robotId); break; }
        await sleep(200 * Math.pow(2, tries));
      }
      showError(null);
    } catch (error) {
      showError(error);
    } finally {
      refreshing.delete(robotId);
    }
  }

  function onLive(message) {
    var need = wanted.get(message.robotId) || { seq: 0, sampledAt: 0 };
    need.seq = Math.max(need.seq, message.seq);
    if (message.type === 'RobotTelemetry') need.sampledAt = Math.max(need.sampledAt, Date.parse(message.at) || 0);
    wanted.set(message.robotId, need);
    lastEventView.textContent = 'Last: ' + message.type + ' · ' + message.robotId + ' · ' + time(message.at);
    refresh(message.robotId);
  }

  function onMessage(text) {
    var message;
    try { message = JSON.parse(text); } catch (error) { return; }
    if (!message || typeof message !== 'object') return;
    if (message.type === 'Subscribed') {
      setState('live', 'live');
      if (!loadedSinceOpen) {
        // Whatever happened while we were away: the list again, now that pushes flow.
        loadedSinceOpen = true;
        loadAll().then(function () { showError(null); }, showError);
      }
    } else if (message.type === 'Error' && message.error) {
      showError('WebSocket: ' + message.error.message);
    } else if (typeof message.message === 'string' && typeof message.type !== 'string') {
      showError('WebSocket: ' + message.message);
    } else if (typeof message.robotId === 'string' && typeof message.seq === 'number') {
      onLive(message);
    }
  }

  function subscribe() {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['*'] }));
  }

  function connect() {
    setState(attempt === 0 ? 'connecting' : 'reconnecting', 'down');
    var url = config.webSocketUrl + (config.webSocketUrl.indexOf('?') < 0 ? '?' : '&') + 'token=' + encodeURIComponent(config.token);
    var ws = new WebSocket(url);
    socket = ws;
    loadedSinceOpen = false;
    ws.onopen = function () {
      attempt = 0;
      setState('subscribing', 'down');
      subscribe();
      // API Gateway closes a connection that has sent nothing for 10 minutes; subscribing again is harmless.
      keepAlive = setInterval(subscribe, 5 * 60 * 1000);
    };
    ws.onmessage = function (event) { if (typeof event.data === 'string') onMessage(event.data); };
    ws.onerror = function () { /* a close follows */ };
    ws.onclose = function (event) {
      if (keepAlive) clearInterval(keepAlive);
      keepAlive = null;
      var delay = Math.round(Math.min(30000, 1000 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2));
      attempt++;
      setState('disconnected (' + event.code + '), reconnecting in ' + Math.ceil(delay / 1000) + ' s', 'down');
      setTimeout(connect, delay);
    };
  }

  loadAll().catch(showError);
  connect();
})();
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
const SCRIPT_HASH = sha256(SCRIPT);
const STYLE_HASH = sha256(STYLE);

const COLUMN_TITLES = ['Robot', 'Model', 'Status', 'Lifecycle', 'Last seen', 'Teleoperated', 'CPU temp', 'CPU', 'Memory', 'Disk', 'Alerts'];

export function renderLivePage(options: LivePageOptions): string {
  const webSocketUrl = parseUrl(options.webSocketUrl, 'webSocketUrl', ['ws:', 'wss:']);
  const apiOrigin = options.apiBaseUrl.startsWith('/')
    ? null
    : parseUrl(options.apiBaseUrl, 'apiBaseUrl (a path starting with / or an http(s) URL)', ['http:', 'https:']).origin;
  if (typeof options.token !== 'string' || options.token.trim() === '') throw new Error('renderLivePage: token must not be empty');

  const config = { apiBaseUrl: options.apiBaseUrl.replace(/\/+$/, ''), webSocketUrl: options.webSocketUrl, token: options.token };
  const connectSources = ["'self'", `${webSocketUrl.protocol}//${webSocketUrl.host}`, ...(apiOrigin ? [apiOrigin] : [])];
  const policy = [
    "default-src 'none'",
    `script-src ${SCRIPT_HASH}`,
    `style-src ${STYLE_HASH}`,
    `connect-src ${connectSources.join(' ')}`,
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(policy)}">
<meta name="referrer" content="no-referrer">
<title>Lekiwi Heartbeat · live fleet (local)</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>Lekiwi Heartbeat · live fleet</h1>
<p>Local cloud · <span id="connection">starting</span> · <span id="count">0 robots</span></p>
<p id="last-event"></p>
<p id="error" role="alert"></p>
</header>
<table>
<thead><tr>${COLUMN_TITLES.map((title) => `<th>${escapeHtml(title)}</th>`).join('')}</tr></thead>
<tbody id="robots"></tbody>
</table>
<!-- The token is a development token of the local cloud, embedded for this loopback page only. -->
<script id="live-config" type="application/json">${jsonForScript(config)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

/**
 * Headers to serve the page with: never cached (it carries a token), no referrer, not framed. The page's own
 * meta Content-Security-Policy applies as well.
 */
export const LIVE_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

/** JSON that can sit inside a <script> element: no `<`, `>` or `&` (so no `</script>` or `<!--`), no U+2028/9. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** For text and double-quoted attribute values (the CSP's single quotes stay readable). */
function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function parseUrl(value: string, name: string, protocols: readonly string[]): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`renderLivePage: ${name} is not a URL: ${JSON.stringify(value)}`);
  }
  if (!protocols.includes(url.protocol)) throw new Error(`renderLivePage: ${name} must use ${protocols.join(' or ')}, got ${url.protocol}`);
  return url;
}
