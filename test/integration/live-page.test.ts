import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { startHttpGateway, type HttpGateway } from '../../local/http-gateway.js';
import { LocalJwtIssuer } from '../../local/jwt-issuer.js';
import { LIVE_PAGE_HEADERS, renderLivePage } from '../../local/live-page.js';
import { startWebSocketGateway, type WebSocketGateway } from '../../local/websocket-gateway.js';
import { POLL } from '../support/poll.js';

/**
 * The live page: its markup and the safety of what it embeds, then its script run for real (node:vm, a small DOM
 * that only offers what the page may use — no innerHTML) against the HTTP and WebSocket gateways, with a fleet held
 * in memory behind them.
 */

const ISSUER = 'http://localhost:1/local-pool';
const AUDIENCE = 'lekiwi-heartbeat-local';

// ---- What the page embeds.

function scriptsOf(html: string): { attributes: string; body: string }[] {
  return [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)].map((match) => ({ attributes: match[1] ?? '', body: match[2] ?? '' }));
}

describe('renderLivePage', () => {
  const nasty = 'eyJ.x</script><script>alert(1)</script><!--\u2028&amp;"\'';
  const html = renderLivePage({ apiBaseUrl: '/api/v2', webSocketUrl: 'ws://localhost:3001/live', token: nasty });

  it('is one well-formed document with two scripts: the JSON settings and the page’s code', () => {
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html.trimEnd().endsWith('</html>')).toBe(true);
    expect(html.match(/<script/g)).toHaveLength(2);
    expect(html.match(/<\/script>/g)).toHaveLength(2);
    for (const tag of ['html', 'head', 'body', 'table', 'thead', 'tbody', 'header', 'style', 'title']) {
      expect(html.match(new RegExp(`<${tag}[\\s>]`, 'g'))?.length, tag).toBe(html.match(new RegExp(`</${tag}>`, 'g'))?.length);
    }
    const [settings, code] = scriptsOf(html);
    expect(settings?.attributes).toContain('type="application/json"');
    // The code compiles, and never writes markup.
    expect(() => new vm.Script(code?.body ?? '')).not.toThrow();
    expect(code?.body).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });

  it('embeds the token so that it cannot close the script element, and reads back exactly', () => {
    const [settings] = scriptsOf(html);
    expect(settings?.body).not.toMatch(/[<>&\u2028]/);
    expect(JSON.parse(settings?.body ?? '')).toEqual({ apiBaseUrl: '/api/v2', webSocketUrl: 'ws://localhost:3001/live', token: nasty });
    expect(html).not.toContain('<script>alert(1)');
  });

  it('carries a Content-Security-Policy that allows its own script and style by hash and the two APIs only', () => {
    const policy = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1] ?? '';
    const [, code] = scriptsOf(html);
    const hash = createHash('sha256').update(code?.body ?? '').digest('base64');
    expect(policy).toContain(`script-src 'sha256-${hash}'`);
    expect(policy).toContain("default-src 'none'");
    expect(policy).toContain("connect-src 'self' ws://localhost:3001");
    expect(LIVE_PAGE_HEADERS['cache-control']).toBe('no-store');
  });

  it('refuses settings it cannot use, naming them', () => {
    expect(() => renderLivePage({ apiBaseUrl: '/api/v2', webSocketUrl: 'http://localhost:3001', token: 't' })).toThrow(/webSocketUrl/);
    expect(() => renderLivePage({ apiBaseUrl: 'api/v2', webSocketUrl: 'ws://localhost:3001', token: 't' })).toThrow(/apiBaseUrl/);
    expect(() => renderLivePage({ apiBaseUrl: '/api/v2', webSocketUrl: 'ws://localhost:3001', token: ' ' })).toThrow(/token/);
  });
});

// ---- The page running.

/** Just the DOM the page may use; markup APIs throw. */
class FakeElement {
  children: FakeElement[] = [];
  parent: FakeElement | null = null;
  className = '';
  private text = '';

  constructor(
    readonly tagName: string,
    readonly id = '',
  ) {}

  get textContent(): string {
    return this.children.length > 0 ? this.children.map((child) => child.textContent).join('') : this.text;
  }

  set textContent(value: string) {
    this.children = [];
    this.text = String(value);
  }

  get innerHTML(): string {
    throw new Error('the page must not use innerHTML');
  }

  set innerHTML(_: string) {
    throw new Error('the page must not use innerHTML');
  }

  appendChild(child: FakeElement): FakeElement {
    child.parent?.removeChild(child);
    this.children.push(child);
    child.parent = this;
    return child;
  }

  insertBefore(child: FakeElement, before: FakeElement): FakeElement {
    const index = this.children.indexOf(before);
    if (index < 0) throw new Error('insertBefore: not a child');
    child.parent?.removeChild(child);
    this.children.splice(index, 0, child);
    child.parent = this;
    return child;
  }

  removeChild(child: FakeElement): FakeElement {
    const index = this.children.indexOf(child);
    if (index < 0) throw new Error('removeChild: not a child');
    this.children.splice(index, 1);
    child.parent = null;
    return child;
  }
}

interface Robot {
  robotId: string;
  model: 'lekiwi' | 'xle';
  status: 'online' | 'offline';
  lifecycle: string;
  lastSeenAt: string | null;
  teleoperation: { active: boolean; operatorAddress: string | null; since: string | null };
  alerts: { metric: string; severity: string }[];
  telemetry: {
    sampledAt: string;
    cpuTemperatureC?: number;
    cpuPercent?: number;
    memoryPercent?: number;
    diskPercent?: number;
    metrics?: Record<string, { value: number; sampledAt: string; ageMs: number; stale: boolean }>;
    stale?: boolean;
  } | null;
  lastSeq: number;
}

const robot = (robotId: string, changes: Partial<Robot> = {}): Robot => ({
  robotId,
  model: robotId.startsWith('xle') ? 'xle' : 'lekiwi',
  status: 'online',
  lifecycle: 'active',
  lastSeenAt: '2026-11-22T10:00:00.000Z',
  teleoperation: { active: false, operatorAddress: null, since: null },
  alerts: [],
  telemetry: { sampledAt: '2026-11-22T10:00:00.000Z', cpuTemperatureC: 51.25, cpuPercent: 12, memoryPercent: 40, diskPercent: 70 },
  lastSeq: 3,
  ...changes,
});

describe('the live page, running', () => {
  let dir: string;
  let issuer: LocalJwtIssuer;
  let http: HttpGateway;
  let ws: WebSocketGateway;
  const fleet = new Map<string, Robot>();
  /** Updates the read model shows only from the second read of the robot on (it lags the live push). */
  const lagging = new Map<string, { robot: Robot; reads: number }>();
  const reads: string[] = [];
  const subscribers = new Set<string>();
  let pageToken: string;
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<WebSocket>();
  const elements = new Map<string, FakeElement>();

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'live-page-'));
    issuer = await LocalJwtIssuer.openOrCreate(dir, { issuer: ISSUER, audience: AUDIENCE });
    pageToken = issuer.sign({ subject: 'live-page', username: 'live-page', groups: ['operator'], expiresInSeconds: 600 });
    for (const id of ['xle-LP0003', 'lekiwi-LP0001', 'lekiwi-LP0002']) fleet.set(id, robot(id));
    fleet.set('xle-LP0003', robot('xle-LP0003', { alerts: [{ metric: 'diskPercent', severity: 'warning' }] }));

    http = await startHttpGateway({
      authorizer: { issuer: ISSUER, audience: [AUDIENCE] },
      jwks: () => issuer.jwks(),
      log: () => undefined,
      integration: async (event) => {
        if (event.routeKey === 'GET /api/v2/robots') {
          reads.push('list');
          // Two robots a page, whatever the page asks for, so it has to follow the cursor.
          const sorted = [...fleet.values()].sort((a, b) => (a.robotId < b.robotId ? -1 : 1));
          const from = Number(event.queryStringParameters?.cursor ?? 0);
          const next = from + 2 < sorted.length ? String(from + 2) : null;
          return { items: sorted.slice(from, from + 2), nextCursor: next };
        }
        if (event.routeKey === 'GET /api/v2/robots/{id}') {
          const id = event.pathParameters?.id ?? '';
          reads.push(id);
          const lag = lagging.get(id);
          if (lag && ++lag.reads >= 2) {
            fleet.set(id, lag.robot);
            lagging.delete(id);
          }
          const found = fleet.get(id);
          return found ?? { statusCode: 404, body: JSON.stringify({ error: { code: 'ROBOT_NOT_FOUND', message: 'no' } }) };
        }
        return { statusCode: 404, body: '{}' };
      },
    });
    ws = await startWebSocketGateway({
      authorizer: async (event) => ({
        principalId: 'live-page',
        policyDocument: {
          Version: '2012-10-17',
          Statement: [{ Action: 'execute-api:Invoke', Effect: event.queryStringParameters?.token === pageToken ? 'Allow' : 'Deny', Resource: event.methodArn }],
        },
      }),
      routes: {
        subscribe: async (event) => {
          subscribers.add(event.requestContext.connectionId);
          const { robotIds } = JSON.parse(event.body ?? '{}') as { robotIds: string[] };
          return { statusCode: 200, body: JSON.stringify({ type: 'Subscribed', robotIds }) };
        },
      },
      disconnect: async (event) => void subscribers.delete(event.requestContext.connectionId),
      log: () => undefined,
    });

    // The page, as a browser would run it.
    const html = renderLivePage({ apiBaseUrl: '/api/v2', webSocketUrl: ws.url, token: pageToken });
    const [settings, code] = scriptsOf(html);
    for (const id of ['robots', 'connection', 'count', 'error', 'last-event']) {
      expect(html).toContain(`id="${id}"`);
      elements.set(id, new FakeElement(id === 'robots' ? 'tbody' : 'span', id));
    }
    const config = new FakeElement('script', 'live-config');
    config.textContent = settings?.body ?? '';
    elements.set('live-config', config);
    const track = <T extends NodeJS.Timeout>(timer: T) => (timers.add(timer), timer);
    class PageWebSocket extends WebSocket {
      constructor(url: string) {
        super(url);
        sockets.add(this);
      }
    }
    const context = vm.createContext({
      document: {
        getElementById: (id: string) => elements.get(id) ?? null,
        createElement: (tag: string) => new FakeElement(tag),
      },
      fetch: (url: string, init: RequestInit) => fetch(new URL(url, http.url), init),
      WebSocket: PageWebSocket,
      setTimeout: (fn: () => void, ms: number) => (stopped ? undefined : track(setTimeout(fn, ms))),
      setInterval: (fn: () => void, ms: number) => (stopped ? undefined : track(setInterval(fn, ms))),
      clearInterval: (timer: NodeJS.Timeout) => clearInterval(timer),
      clearTimeout: (timer: NodeJS.Timeout) => clearTimeout(timer),
      console,
    });
    new vm.Script(code?.body ?? '').runInContext(context);
  });

  afterAll(async () => {
    stopped = true;
    for (const timer of timers) clearTimeout(timer);
    for (const socket of sockets) socket.terminate();
    await ws?.stop();
    await http?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const text = (id: string) => elements.get(id)?.textContent ?? '';
  const rows = () => (elements.get('robots')?.children ?? []).map((tr) => tr.children.map((td) => td.textContent));
  const rowOf = (id: string) => rows().find((cells) => cells[0] === id);
  const cellOf = (id: string, column: number) => elements.get('robots')?.children.find((tr) => tr.children[0]?.textContent === id)?.children[column];

  /** What is awaited, with what the page says now (a failed wait shows it as it was at the last check). */
  const awaiting = (what: string) => `${what}; page says ${text('connection')} / ${text('error')}`;

  async function push(message: unknown): Promise<void> {
    for (const connectionId of subscribers) {
      const response = await fetch(`${ws.managementUrl}/@connections/${encodeURIComponent(connectionId)}`, {
        method: 'POST',
        body: JSON.stringify(message),
      });
      expect(response.status).toBe(200);
    }
  }

  it('lists every robot over all cursor pages, in order, and goes live on the WebSocket', async () => {
    await vi.waitFor(() => {
      expect(rows(), awaiting('the list')).toHaveLength(3);
      expect(text('connection'), awaiting('the subscription')).toBe('live');
    }, POLL);
    expect(rows().map((cells) => cells[0])).toEqual(['lekiwi-LP0001', 'lekiwi-LP0002', 'xle-LP0003']);
    expect(rowOf('lekiwi-LP0001')).toEqual(['lekiwi-LP0001', 'lekiwi', 'online', 'active', expect.any(String), 'no', '51.3 °C', '12 %', '40 %', '70 %', '0']);
    expect(rowOf('xle-LP0003')?.[10]).toBe('1');
    expect(cellOf('xle-LP0003', 10)?.className).toBe('alerting');
    expect(cellOf('lekiwi-LP0001', 2)?.className).toBe('online');
    expect(text('count')).toBe('3 robots');
    expect(subscribers.size).toBe(1);
  });

  it('re-reads a robot on a live message until the read model has caught up with it', async () => {
    const changed = robot('lekiwi-LP0002', {
      status: 'offline',
      lastSeq: 4,
      teleoperation: { active: true, operatorAddress: '10.0.0.9', since: null },
      alerts: [
        { metric: 'cpuTemperatureC', severity: 'critical' },
        { metric: 'diskPercent', severity: 'warning' },
      ],
    });
    lagging.set('lekiwi-LP0002', { robot: changed, reads: 0 });
    const before = reads.filter((read) => read === 'lekiwi-LP0002').length;

    await push({ type: 'RobotDisconnected', robotId: 'lekiwi-LP0002', seq: 4, at: '2026-11-22T10:05:00.000Z', data: {} });

    await vi.waitFor(() => expect(rowOf('lekiwi-LP0002')?.[2], awaiting('the row to show the robot offline')).toBe('offline'), POLL);
    expect(rowOf('lekiwi-LP0002')).toMatchObject({ 5: 'yes (10.0.0.9)', 10: '2' });
    expect(cellOf('lekiwi-LP0002', 2)?.className).toBe('offline');
    expect(reads.filter((read) => read === 'lekiwi-LP0002').length - before).toBeGreaterThanOrEqual(2);
    expect(text('last-event')).toContain('RobotDisconnected · lekiwi-LP0002');
  });

  it('adds a robot it first hears of, in its place', async () => {
    fleet.set('lekiwi-LP0000', robot('lekiwi-LP0000', { lastSeq: 1 }));
    await push({ type: 'RobotConnected', robotId: 'lekiwi-LP0000', seq: 1, at: '2026-11-22T10:06:00.000Z', data: {} });
    await vi.waitFor(() => expect(rows(), awaiting('the new row')).toHaveLength(4), POLL);
    expect(rows().map((cells) => cells[0])).toEqual(['lekiwi-LP0000', 'lekiwi-LP0001', 'lekiwi-LP0002', 'xle-LP0003']);
  });

  it('reconnects after the connection is dropped, and reloads the list', async () => {
    const [connectionId] = [...subscribers];
    const listsBefore = reads.filter((read) => read === 'list').length;
    const deleted = await fetch(`${ws.managementUrl}/@connections/${encodeURIComponent(connectionId ?? '')}`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);

    await vi.waitFor(() => expect(text('connection'), awaiting('the page to notice')).toMatch(/^disconnected \(1000\)/), POLL);
    await vi.waitFor(() => {
      expect(text('connection'), awaiting('a new subscription')).toBe('live');
      expect(subscribers.size, awaiting('a new subscription')).toBe(1);
      expect(subscribers.has(connectionId ?? ''), awaiting('the old subscription to be gone')).toBe(false);
    }, POLL);
    await vi.waitFor(() => expect(reads.filter((read) => read === 'list').length, awaiting('the list to be reloaded')).toBeGreaterThan(listsBefore), POLL);
  });

  it('shows how old each value is, and marks stale values: an old one, then every one once the robot is offline', async () => {
    const metric = (value: number, sampledAt: string, ageMs: number, stale = false) => ({ value, sampledAt, ageMs, stale });
    const telemetry = (stale: boolean) => ({
      sampledAt: '2026-11-22T10:10:00.000Z',
      cpuTemperatureC: 50,
      cpuPercent: 20,
      diskPercent: 70,
      metrics: {
        cpuTemperatureC: metric(50, '2026-11-22T10:10:00.000Z', 5_000, stale),
        cpuPercent: metric(20, '2026-11-22T10:10:00.000Z', 5_000, stale),
        diskPercent: metric(70, '2026-11-22T09:50:00.000Z', 1_205_000, true),
      },
      stale,
    });
    fleet.set('lekiwi-LP0001', robot('lekiwi-LP0001', { lastSeq: 5, telemetry: telemetry(false) }));
    await push({ type: 'RobotTelemetry', robotId: 'lekiwi-LP0001', seq: 5, at: '2026-11-22T10:10:00.000Z', data: {} });

    await vi.waitFor(() => expect(rowOf('lekiwi-LP0001')?.[7], awaiting('the new values with their ages')).toBe('20 % · 5 s ago'), POLL);
    expect(rowOf('lekiwi-LP0001')?.slice(6)).toEqual(['50.0 °C · 5 s ago', '20 % · 5 s ago', '–', '70 % · 20 min ago (stale)', '0']);
    expect(cellOf('lekiwi-LP0001', 7)?.className).toBe('');
    expect(cellOf('lekiwi-LP0001', 9)?.className).toBe('stale');

    fleet.set('lekiwi-LP0001', robot('lekiwi-LP0001', { status: 'offline', lastSeq: 6, telemetry: telemetry(true) }));
    await push({ type: 'RobotDisconnected', robotId: 'lekiwi-LP0001', seq: 6, at: '2026-11-22T10:11:00.000Z', data: {} });

    await vi.waitFor(() => expect(rowOf('lekiwi-LP0001')?.[2], awaiting('the robot offline')).toBe('offline'), POLL);
    expect(rowOf('lekiwi-LP0001')?.slice(6, 8)).toEqual(['50.0 °C · 5 s ago (stale)', '20 % · 5 s ago (stale)']);
    expect([6, 7, 9].map((column) => cellOf('lekiwi-LP0001', column)?.className)).toEqual(['stale', 'stale', 'stale']);
  });
});
