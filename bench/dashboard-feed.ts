import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WebSocketServer, type WebSocket } from 'ws';
import { seededRandom } from '../lib/seeded-random.js';
import {
  LIVE_MESSAGE_MAX_BYTES,
  ROBOT_MODELS,
  TELEMETRY_RATE_INTERVAL_MS,
  type DashboardConfig,
  type EventView,
  type FleetMetrics,
  type Lifecycle,
  type LiveMessage,
  type RobotView,
  type TelemetryView,
} from '../schemas/index.js';

/**
 * The bench feed for `bench:dashboard`: everything the built dashboard (dashboard/dist) talks to, in this process,
 * for a simulated fleet of any size, with no cloud behind it:
 * - the bundle itself (SPA fallback to index.html), `/config.json`;
 * - an OAuth stand-in that signs everyone in as an operator at once (`/oauth2/authorize` redirects straight back with
 *   a code; `/oauth2/token` answers an unsigned id token: the page reads, never verifies, its claims);
 * - `/api/v2/robots` (keyset pages), `/robots/{id}`, `/robots/{id}/events` (with `after`), `/robots/{id}/telemetry`
 *   (empty), `/metrics`, `/discover`;
 * - the live WebSocket API at `/live`: `subscribe` is acknowledged with `Subscribed`; a connection with a coalesced
 *   telemetry rate gets a round of `RobotsUpdated` messages every TELEMETRY_RATE_INTERVAL_MS (each below
 *   LIVE_MESSAGE_MAX_BYTES, every robot that sampled since the last round), a `raw` one a `RobotTelemetry` per sample;
 *   every domain event is a LiveMessage at once.
 *
 * Every robot samples once a second (its telemetry walks like a Pi's); `eventsPerSecond` domain events (alerts raised
 * and cleared, teleoperations started and stopped) change robots in between. Each connection keeps a log of what was
 * sent on it, message by message (the robots each message carried, and when), so the benchmark can pair the page's
 * arrival stamps with robots: a socket delivers in order.
 */

export interface FeedOptions {
  readonly distDir: string;
  readonly robots: number;
  readonly eventsPerSecond: number;
  readonly seed?: string;
}

export interface SentMessage {
  /** Robots whose view this message carried (RobotsUpdated, RobotTelemetry, a domain event); empty for acks. */
  readonly robotIds: readonly string[];
  /** performance.timeOrigin + performance.now() when handed to the socket (epoch ms). */
  readonly sentAt: number;
  readonly bytes: number;
}

export interface FeedConnection {
  readonly sent: SentMessage[];
  rate: 'raw' | '1s' | null;
  open: boolean;
}

export interface DashboardFeed {
  readonly url: string;
  readonly connections: readonly FeedConnection[];
  /** Rounds sent so far and their size. */
  readonly stats: { rounds: number; messages: number; bytes: number; events: number };
  close(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

const epochNow = () => performance.timeOrigin + performance.now();

/** A robot of the simulated fleet: its view, its history, and the walk its vital signs follow. */
interface SimulatedRobot {
  view: RobotView;
  readonly events: EventView[];
  readonly walk: { cpu: number; memory: number; disk: number; temperature: number };
}

export async function startDashboardFeed(options: FeedOptions): Promise<DashboardFeed> {
  const indexHtml = await readFile(join(options.distDir, 'index.html'), 'utf8').catch(() => {
    throw new Error(`${options.distDir}/index.html is missing: build the dashboard first (npm run dashboard:build)`);
  });
  const random = seededRandom(options.seed ?? 'bench-dashboard');
  const fleet = createFleet(options.robots, random);
  const byId = new Map(fleet.map((robot) => [robot.view.robotId, robot]));
  const connections: FeedConnection[] = [];
  const sockets = new Map<WebSocket, FeedConnection>();
  const stats = { rounds: 0, messages: 0, bytes: 0, events: 0 };
  const changedSinceRound = new Set<string>();

  const server = createServer((request, response) => {
    void handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) send(response, 500, { error: { code: 'INTERNAL_ERROR', message: String(error) } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const origin = `http://localhost:${port}`;
  const config: DashboardConfig = {
    stage: 'bench',
    apiBaseUrl: '/api/v2',
    webSocketUrl: `ws://localhost:${port}/live`,
    auth: {
      authorizeUrl: `${origin}/oauth2/authorize`,
      tokenUrl: `${origin}/oauth2/token`,
      logoutUrl: `${origin}/logout`,
      clientId: 'bench-dashboard',
      scopes: ['openid', 'email'],
    },
  };

  const live = new WebSocketServer({ noServer: true });
  server.on('upgrade', (request, socket, head) => {
    if (new URL(request.url ?? '/', origin).pathname !== '/live') return socket.destroy();
    live.handleUpgrade(request, socket, head, (ws) => {
      const connection: FeedConnection = { sent: [], rate: null, open: true };
      connections.push(connection);
      sockets.set(ws, connection);
      ws.on('message', (data) => {
        let message: { action?: string; robotIds?: string[]; telemetry?: 'raw' | '1s' };
        try {
          message = JSON.parse(String(data)) as typeof message;
        } catch {
          return;
        }
        if (message.action === 'subscribe') {
          connection.rate = message.telemetry ?? connection.rate ?? 'raw';
          push(ws, connection, JSON.stringify({ type: 'Subscribed', robotIds: message.robotIds ?? [], telemetry: connection.rate }), []);
        }
      });
      ws.on('close', () => {
        connection.open = false;
        sockets.delete(ws);
      });
    });
  });

  function push(ws: WebSocket, connection: FeedConnection, text: string, robotIds: readonly string[]): void {
    connection.sent.push({ robotIds, sentAt: epochNow(), bytes: text.length });
    stats.messages += 1;
    stats.bytes += text.length;
    ws.send(text);
  }

  /** Every robot samples once a second: its view changes; raw connections hear of each sample at once. */
  const sampler = setInterval(() => {
    const now = new Date();
    for (const robot of fleet) {
      sample(robot, now, random);
      changedSinceRound.add(robot.view.robotId);
    }
    const raw = [...sockets].filter(([, connection]) => connection.rate === 'raw');
    if (raw.length === 0) return;
    for (const robot of fleet) {
      const text = JSON.stringify({ type: 'RobotTelemetry', robotId: robot.view.robotId, seq: robot.view.lastSeq, at: now.toISOString(), data: robot.view.telemetry });
      for (const [ws, connection] of raw) push(ws, connection, text, [robot.view.robotId]);
    }
  }, 1000);

  /** A round for coalesced connections: the latest view of every robot changed since the last one, in chunks. */
  const rounds = setInterval(() => {
    if (changedSinceRound.size === 0) return;
    const at = new Date().toISOString();
    const ids = [...changedSinceRound];
    changedSinceRound.clear();
    const chunks = chunk(ids.map((id) => ({ id, json: JSON.stringify(byId.get(id)!.view) })), at);
    stats.rounds += 1;
    for (const [ws, connection] of sockets) {
      if (connection.rate !== '1s') continue;
      for (const part of chunks) push(ws, connection, part.text, part.robotIds);
    }
  }, TELEMETRY_RATE_INTERVAL_MS['1s']);

  /** Domain events, spread over the second: an alert raised or cleared, a teleoperation started or stopped. */
  const eventTimer =
    options.eventsPerSecond > 0
      ? setInterval(() => {
          const robot = fleet[Math.floor(random() * fleet.length)]!;
          const event = nextEvent(robot, random);
          stats.events += 1;
          changedSinceRound.add(robot.view.robotId);
          const message: LiveMessage = { type: event.type as LiveMessage['type'], robotId: robot.view.robotId, seq: event.seq, at: event.at, data: event.data };
          const text = JSON.stringify(message);
          for (const [ws, connection] of sockets) push(ws, connection, text, [robot.view.robotId]);
        }, 1000 / options.eventsPerSecond)
      : undefined;

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', origin);
    const path = url.pathname;
    if (path === '/config.json') return send(response, 200, config);
    if (path === '/oauth2/authorize') {
      const back = new URL(url.searchParams.get('redirect_uri') ?? `${origin}/`);
      back.searchParams.set('code', randomUUID());
      back.searchParams.set('state', url.searchParams.get('state') ?? '');
      response.writeHead(302, { location: back.toString() });
      return void response.end();
    }
    if (path === '/oauth2/token' && request.method === 'POST') {
      const idToken = unsignedToken({ sub: 'bench', 'cognito:username': 'bench-operator', 'cognito:groups': ['operator'], exp: Math.floor(Date.now() / 1000) + 12 * 3600 });
      return send(response, 200, { id_token: idToken, access_token: idToken, refresh_token: 'bench-refresh', expires_in: 43_200, token_type: 'Bearer' });
    }
    if (path === '/logout') {
      response.writeHead(302, { location: url.searchParams.get('logout_uri') ?? `${origin}/` });
      return void response.end();
    }
    if (path.startsWith('/api/v2/')) return api(request, response, url);
    return serveStatic(response, path);
  }

  async function api(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const route = url.pathname.slice('/api/v2'.length);
    if (route === '/robots') {
      const limit = Math.min(500, Number(url.searchParams.get('limit') ?? 100));
      const start = Number(url.searchParams.get('cursor') ?? 0);
      const items = fleet.slice(start, start + limit).map((robot) => robot.view);
      return send(response, 200, { items, nextCursor: start + limit < fleet.length ? String(start + limit) : null });
    }
    if (route === '/metrics') return send(response, 200, metricsOf(fleet.map((robot) => robot.view)));
    if (route === '/discover' && request.method === 'POST') return send(response, 202, { requestId: randomUUID(), asked: 0, failed: 0 });
    const match = /^\/robots\/([^/]+)(\/events|\/telemetry)?$/.exec(route);
    const robot = match ? byId.get(decodeURIComponent(match[1]!)) : undefined;
    if (!match || !robot) return send(response, 404, { error: { code: 'ROBOT_NOT_FOUND', message: `no robot ${route}` } });
    if (match[2] === '/telemetry') {
      const to = new Date();
      return send(response, 200, { robotId: robot.view.robotId, from: new Date(to.getTime() - 3_600_000).toISOString(), to: to.toISOString(), samples: [], truncated: false });
    }
    if (match[2] === '/events') {
      const after = url.searchParams.get('after');
      const items = after === null ? [...robot.events].reverse() : robot.events.filter((event) => event.seq > Number(after));
      return send(response, 200, { items: items.slice(0, 500), nextCursor: null });
    }
    return send(response, 200, robot.view);
  }

  async function serveStatic(response: ServerResponse, path: string): Promise<void> {
    const file = normalize(join(options.distDir, decodeURIComponent(path)));
    if (file.startsWith(options.distDir) && extname(file) !== '') {
      const info = await stat(file).catch(() => null);
      if (info?.isFile()) {
        response.writeHead(200, { 'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
        return void response.end(await readFile(file));
      }
      return send(response, 404, { error: { code: 'NOT_FOUND', message: path } });
    }
    response.writeHead(200, { 'content-type': CONTENT_TYPES['.html']!, 'cache-control': 'no-store' });
    response.end(indexHtml);
  }

  return {
    url: `${origin}/`,
    connections,
    stats,
    async close() {
      clearInterval(sampler);
      clearInterval(rounds);
      if (eventTimer) clearInterval(eventTimer);
      for (const ws of sockets.keys()) ws.terminate();
      live.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  response.end(JSON.stringify(body));
}

function unsignedToken(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.bench`;
}

/** Packs views into RobotsUpdated messages below LIVE_MESSAGE_MAX_BYTES, as the broadcaster splits a round. */
function chunk(views: { id: string; json: string }[], at: string): { text: string; robotIds: string[] }[] {
  const head = `{"type":"RobotsUpdated","at":${JSON.stringify(at)},"robots":[`;
  const parts: { text: string; robotIds: string[] }[] = [];
  let body: string[] = [];
  let ids: string[] = [];
  let size = head.length + 2;
  for (const view of views) {
    if (body.length > 0 && size + view.json.length + 1 > LIVE_MESSAGE_MAX_BYTES) {
      parts.push({ text: `${head}${body.join(',')}]}`, robotIds: ids });
      body = [];
      ids = [];
      size = head.length + 2;
    }
    body.push(view.json);
    ids.push(view.id);
    size += view.json.length + 1;
  }
  if (body.length > 0) parts.push({ text: `${head}${body.join(',')}]}`, robotIds: ids });
  return parts;
}

function createFleet(size: number, random: () => number): SimulatedRobot[] {
  const now = new Date();
  const robots: SimulatedRobot[] = [];
  for (let index = 0; index < size; index += 1) {
    const model = ROBOT_MODELS[index % 5 === 4 ? 1 : 0]!;
    const robotId = `${model}-BENCH${String(index).padStart(5, '0')}`;
    const online = random() > 0.05;
    const connected: EventView = {
      seq: 1,
      eventId: randomUUID(),
      type: 'RobotConnected',
      version: 1,
      at: now.toISOString(),
      recordedAt: now.toISOString(),
      data: { sessionIdentifier: randomUUID(), versionNumber: 1, timestamp: now.getTime() },
    };
    const robot: SimulatedRobot = {
      view: {
        robotId,
        model,
        status: online ? 'online' : 'offline',
        lifecycle: online ? 'ready' : 'offline',
        healthy: online,
        deployable: online,
        registered: true,
        connection: online ? { sessionIdentifier: randomUUID(), ipAddress: `10.0.${index >> 8}.${index & 255}`, since: now.toISOString() } : null,
        lastSeenAt: now.toISOString(),
        teleoperation: { active: false, operatorAddress: null, since: null, confirmed: true },
        alerts: [],
        failure: null,
        rejectedMessages: { count: 0, last: null },
        telemetry: null,
        certificate: benchCertificate(index, now, random),
        software: { version: '1.0.0', update: null },
        lastSeq: 1,
      },
      events: [connected],
      walk: { cpu: 5 + random() * 40, memory: 25 + random() * 30, disk: 30 + random() * 40, temperature: 42 + random() * 26 },
    };
    sample(robot, now, random);
    robots.push(robot);
  }
  return robots;
}

/** A certificate issued up to a year ago with a year's validity, so the Certificate column shows every state. */
function benchCertificate(index: number, now: Date, random: () => number): RobotView['certificate'] {
  const day = 86_400_000;
  const issuedAt = now.getTime() - Math.floor(random() * 380) * day;
  return {
    id: index.toString(16).padStart(64, '0'),
    issuedAt: new Date(issuedAt).toISOString(),
    notAfter: new Date(issuedAt + 365 * day).toISOString(),
    rotatedAt: null,
    lastRotationFailure: null,
  };
}

/** A new sample: the vital signs walk a step; the view gets a new TelemetryView (a new object, as a push would). */
function sample(robot: SimulatedRobot, now: Date, random: () => number): void {
  if (robot.view.status !== 'online') return;
  const step = (value: number, min: number, max: number, size: number) => Math.min(max, Math.max(min, value + (random() * 2 - 1) * size));
  const walk = robot.walk;
  walk.cpu = step(walk.cpu, 1, 95, 4);
  walk.memory = step(walk.memory, 20, 80, 1.5);
  walk.disk = step(walk.disk, 20, 85, 0.05);
  walk.temperature = step(walk.temperature, 40, 78, 0.6);
  const sampledAt = now.toISOString();
  const round = (value: number) => Math.round(value * 10) / 10;
  const values = {
    cpuPercent: round(walk.cpu),
    memoryPercent: round(walk.memory),
    memoryUsedBytes: Math.round((walk.memory / 100) * 4 * 1024 ** 3),
    diskPercent: round(walk.disk),
    cpuTemperatureC: round(walk.temperature),
    uptimeSeconds: Math.floor(now.getTime() / 1000) % 864_000,
    load1: round(walk.cpu / 25),
    agentVersion: '1.4.0',
    lerobotVersion: '0.4.2',
  };
  const metrics: TelemetryView['metrics'] = {};
  for (const [name, value] of Object.entries(values)) metrics[name as keyof typeof values] = { value, sampledAt, ageMs: 0, stale: false };
  robot.view = { ...robot.view, lastSeenAt: sampledAt, telemetry: { sampledAt, ...values, metrics, ageMs: 0, stale: false } };
}

/** The robot's next domain event (toggling an alert or a teleoperation), appended to its history and folded into its view. */
function nextEvent(robot: SimulatedRobot, random: () => number): EventView {
  const view = robot.view;
  const at = new Date().toISOString();
  const seq = view.lastSeq + 1;
  let type: string;
  let data: Record<string, unknown>;
  let next: RobotView;
  if (random() < 0.5) {
    if (view.alerts.length === 0) {
      type = 'AlertRaised';
      data = { metric: 'cpuTemperatureC', severity: 'critical', value: 82.5, threshold: 80 };
      next = { ...view, alerts: [{ metric: 'cpuTemperatureC', severity: 'critical', value: 82.5, threshold: 80, raisedAt: at }], healthy: false, deployable: false };
    } else {
      type = 'AlertCleared';
      data = { metric: 'cpuTemperatureC', value: 72, threshold: 75 };
      next = { ...view, alerts: [], healthy: view.status === 'online' && view.failure === null, deployable: view.status === 'online' && !view.teleoperation.active };
    }
  } else if (!view.teleoperation.active) {
    type = 'TeleoperationStarted';
    const operatorAddress = `192.168.1.${Math.floor(random() * 250) + 2}`;
    data = { operatorAddress, signals: ['actions', 'peer'] };
    next = { ...view, lifecycle: lifecycleOf(view, true), deployable: false, teleoperation: { active: true, operatorAddress, since: at, confirmed: true } };
  } else {
    type = 'TeleoperationStopped';
    data = { reason: 'idle', durationMs: 60_000 };
    next = { ...view, lifecycle: lifecycleOf(view, false), deployable: view.healthy, teleoperation: { active: false, operatorAddress: null, since: null, confirmed: true } };
  }
  const event: EventView = { seq, eventId: randomUUID(), type, version: 1, at, recordedAt: at, data };
  robot.events.push(event);
  if (robot.events.length > 200) robot.events.shift();
  robot.view = { ...next, lastSeq: seq };
  return event;
}

function lifecycleOf(view: RobotView, teleoperated: boolean): Lifecycle {
  if (view.status !== 'online') return 'offline';
  return teleoperated ? 'active' : 'ready';
}

function metricsOf(views: RobotView[]): FleetMetrics {
  const count = (predicate: (view: RobotView) => boolean) => views.filter(predicate).length;
  const lifecycles: Lifecycle[] = ['discovered', 'provisioning', 'ready', 'active', 'maintenance', 'offline', 'failed'];
  const warning = views.reduce((sum, view) => sum + view.alerts.filter((alert) => alert.severity === 'warning').length, 0);
  const critical = views.reduce((sum, view) => sum + view.alerts.filter((alert) => alert.severity === 'critical').length, 0);
  return {
    robots: views.length,
    byStatus: { online: count((view) => view.status === 'online'), offline: count((view) => view.status === 'offline') },
    byLifecycle: Object.fromEntries(lifecycles.map((lifecycle) => [lifecycle, count((view) => view.lifecycle === lifecycle)])) as FleetMetrics['byLifecycle'],
    byModel: { lekiwi: count((view) => view.model === 'lekiwi'), xle: count((view) => view.model === 'xle') },
    healthy: count((view) => view.healthy),
    deployable: count((view) => view.deployable),
    activeTeleoperations: count((view) => view.teleoperation.active),
    activeAlerts: { warning, critical, total: warning + critical },
    rejectedMessages: { total: 0, robots: 0 },
  };
}
