import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { LocalEndpoints } from '../../local/cloud.js';
import { freePort } from '../../local/dynamodb-local.js';

/**
 * The local cloud and agents as real processes, started the way a developer starts them (`npm start`, `npm run
 * cert`, `npm run agent`), on free ports and a fresh state dir, for end-to-end tests and benchmarks.
 */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** `node --import tsx <script>`: one process (the tsx CLI would put a child under it that a SIGKILL leaves running). */
const NODE = process.execPath;
const tsx = (script: string, ...args: string[]) => ['--import', 'tsx', script, ...args];

export interface Ports {
  readonly http: number;
  readonly ws: number;
  readonly mqtt: number;
}

export async function freePorts(): Promise<Ports> {
  const taken = new Set<number>();
  const next = async () => {
    const port = await stablePort(taken);
    taken.add(port);
    return port;
  };
  return { http: await next(), ws: await next(), mqtt: await next() };
}

/** Linux's default ephemeral range (net.ipv4.ip_local_port_range): where port 0 and outgoing connections get ports. */
const EPHEMERAL_FROM = 32_768;
const STABLE_FROM = 20_000;

/**
 * A free port below the ephemeral range. A port found free by binding port 0 is an ephemeral one, and between this
 * check and the local cloud's own bind (a process start later) any outgoing connection of the parallel tests may take
 * it ("Port … is in use", seen in CI). Below the range the kernel hands out nothing by itself, so only another test
 * picking the same random port could take it.
 */
async function stablePort(taken: ReadonlySet<number>): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = STABLE_FROM + Math.floor(Math.random() * (EPHEMERAL_FROM - STABLE_FROM));
    if (!taken.has(port) && (await canListen(port))) return port;
  }
  return freePort();
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export async function freshStateDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'heartbeat-local-'));
}

export interface CloudProcess {
  readonly child: ChildProcess;
  readonly endpoints: LocalEndpoints;
  output(): string;
  /** Ctrl-C, as a developer stops it; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export async function startCloudProcess(options: {
  stateDir: string;
  ports: Ports;
  robots?: number;
  minKeepAliveSeconds?: number;
  env?: Record<string, string>;
  /** Extra node flags, e.g. `--cpu-prof` to profile the cloud under a benchmark. */
  nodeArgs?: string[];
  /** How long to wait for "Ready:" (default 120 s; a large simulated fleet provisions itself first). */
  readyTimeoutMs?: number;
}): Promise<CloudProcess> {
  const child = spawn(NODE, [...(options.nodeArgs ?? []), ...tsx('local/main.ts', '--robots', String(options.robots ?? 0))], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOCAL_STATE_DIR: options.stateDir,
      HTTP_PORT: String(options.ports.http),
      WS_PORT: String(options.ports.ws),
      MQTT_PORT: String(options.ports.mqtt),
      MIN_KEEP_ALIVE_SECONDS: String(options.minKeepAliveSeconds ?? 1),
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor(() => output.includes('Ready:'), {
    timeoutMs: options.readyTimeoutMs ?? 120_000,
    what: 'the local cloud to be ready',
    failFast: () => (child.exitCode !== null ? `it exited with ${child.exitCode}:\n${output}` : undefined),
  });
  const endpoints = JSON.parse(await readFile(join(options.stateDir, 'endpoints.json'), 'utf8')) as LocalEndpoints;
  return {
    child,
    endpoints,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return exited;
    },
  };
}

/** `npm run cert -- <thingName>`; returns the agent config path. */
export async function issueCertificate(stateDir: string, thingName: string, keepAliveSeconds = 2): Promise<string> {
  await run(NODE, tsx('scripts/cert.ts', thingName, '--keep-alive', String(keepAliveSeconds)), { LOCAL_STATE_DIR: stateDir });
  return join(stateDir, 'certs', thingName, 'agent.json');
}

export interface AgentProcess {
  readonly child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startAgentProcess(configFile: string, env: Record<string, string> = {}): AgentProcess {
  const child = spawn(NODE, tsx('agent/main.ts', '--config', configFile), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

/** A live feed client: connects with a token, subscribes, and keeps every message it receives. */
export interface LiveClient {
  readonly messages: Record<string, unknown>[];
  /** Calls `listener` with every message from now on, as it arrives (for timing). */
  onMessage(listener: (message: Record<string, unknown>) => void): void;
  waitFor(predicate: (message: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  close(): void;
}

export async function connectLiveClient(endpoints: LocalEndpoints, robotIds: string[] = ['*']): Promise<LiveClient> {
  const token = (await readFile(endpoints.tokens.operator, 'utf8')).trim();
  const socket = new WebSocket(`${endpoints.webSocketUrl}?token=${encodeURIComponent(token)}`);
  const messages: Record<string, unknown>[] = [];
  const listeners: ((message: Record<string, unknown>) => void)[] = [];
  socket.on('message', (data) => {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(String(data)) as Record<string, unknown>;
    } catch {
      message = { unparseable: String(data) };
    }
    messages.push(message);
    for (const listener of listeners) listener(message);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
    socket.once('unexpected-response', (_request, response) => reject(new Error(`WebSocket refused: ${response.statusCode}`)));
  });
  socket.send(JSON.stringify({ action: 'subscribe', robotIds }));
  const client: LiveClient = {
    messages,
    onMessage: (listener) => void listeners.push(listener),
    async waitFor(predicate, what, timeoutMs = 20_000) {
      let found: Record<string, unknown> | undefined;
      await waitFor(() => (found = messages.find(predicate)) !== undefined, {
        timeoutMs,
        what,
        failFast: () => undefined,
        describe: () => `received: ${JSON.stringify(messages).slice(-2000)}`,
      });
      return found!;
    },
    close: () => socket.close(),
  };
  await client.waitFor((message) => message.type === 'Subscribed', 'the subscription to be acknowledged');
  return client;
}

export async function getJson(endpoints: LocalEndpoints, path: string, role: 'admin' | 'engineer' | 'operator' = 'operator'): Promise<{ status: number; body: any }> {
  const token = (await readFile(endpoints.tokens[role], 'utf8')).trim();
  const response = await fetch(`${endpoints.apiUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/**
 * Polls `condition` until it holds, `failFast` names a reason to stop, or `timeoutMs` passes. For the benchmarks
 * (bench/), which run these processes outside vitest; a test waits with `expect.poll` / `vi.waitFor` (test/support/poll.ts).
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  options: { timeoutMs: number; what: string; failFast?: () => string | undefined; describe?: () => string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await condition()) return;
    const failure = options.failFast?.();
    if (failure) throw new Error(`Gave up waiting for ${options.what}: ${failure}`);
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${options.timeoutMs} ms waiting for ${options.what}${options.describe ? `; ${options.describe()}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function run(command: string, args: string[], env: Record<string, string>): Promise<string> {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${args.join(' ')} exited with ${code}:\n${output}`);
  return output;
}

export async function removeStateDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
