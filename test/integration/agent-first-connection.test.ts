import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LinkGaveUpError, MqttLink } from '../../agent/adapters/mqtt-link.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { freePort, startMosquitto, type Mosquitto, type MosquittoCredentials } from '../support/mosquitto.js';

/**
 * An agent that cannot make its first connection says why and exits non-zero (so systemd restarts it and the journal
 * shows the reason), instead of running on without ever connecting; an agent that did connect outlives any outage.
 * The agent runs as its own process against a real Mosquitto with mTLS, as on a robot.
 */

const ROBOT = 'lekiwi-LK0001';
const BUDGET_SECONDS = 2;

let broker: Mosquitto;
let workDir: string;
let robot: MosquittoCredentials;
/** Another certificate's key (same CA): not the robot certificate's key. */
let otherKey: string;
/** A CA that did not sign the broker's certificate. */
let foreignCaFile: string;
const children = new Set<ChildProcessWithoutNullStreams>();

beforeAll(async () => {
  broker = await startMosquitto();
  workDir = await mkdtemp(join(tmpdir(), 'heartbeat-agent-first-connection-'));
  robot = await broker.issueClient(ROBOT);
  otherKey = (await broker.issueClient('lekiwi-LK0002')).privateKeyFile;
  foreignCaFile = join(workDir, 'foreign-ca.pem');
  await writeFile(foreignCaFile, (await CertificateAuthority.create({ commonName: 'Foreign CA' })).certificatePem);
});

afterEach(() => {
  for (const child of children) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  children.clear();
});

afterAll(async () => {
  await broker?.stop();
  await rm(workDir, { recursive: true, force: true });
});

async function writeAgentConfig(name: string, fields: Record<string, unknown>): Promise<string> {
  const path = join(workDir, `${name}.json`);
  await writeFile(
    path,
    JSON.stringify({
      endpoint: 'localhost',
      port: broker.port,
      thingName: ROBOT,
      certificateFile: robot.certificateFile,
      privateKeyFile: robot.privateKeyFile,
      caFile: broker.caFile,
      stateDir: join(workDir, `${name}-state`),
      basicIngest: false,
      firstConnectionBudgetSeconds: BUDGET_SECONDS,
      reconnect: { minSeconds: 1, maxSeconds: 1 },
      teleoperation: { enabled: false },
      logLevel: 'debug',
      ...fields,
    }),
  );
  return path;
}

interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly [field: string]: unknown;
}

/** `tsx agent/main.ts --config <file>` in its own process group; its stdout as JSON log lines. */
function runAgent(configFile: string) {
  const child = spawn(join(process.cwd(), 'node_modules', '.bin', 'tsx'), ['agent/main.ts', '--config', configFile], {
    cwd: process.cwd(),
    env: { ...process.env, LOG_LEVEL: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = (): LogLine[] =>
    stdout
      .split('\n')
      .filter((line) => line.trim().startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);
  return { child, exited, lines, output: () => `${stdout}\n${stderr}` };
}

describe('an agent that cannot make its first connection', () => {
  it('with a key that is not its certificate\'s: exits 1 at once, naming privateKeyFile', async () => {
    const agent = runAgent(await writeAgentConfig('mismatched-key', { privateKeyFile: otherKey }));

    const code = await agent.exited;

    expect(code).toBe(1);
    const error = agent.lines().find((line) => line.level === 'error');
    expect(error?.message).toContain(`privateKeyFile ${otherKey} is not the key of certificateFile ${robot.certificateFile}`);
  });

  it('with a CA that did not sign the broker\'s certificate: logs each failure with what to check, exits 78', async () => {
    const agent = runAgent(await writeAgentConfig('foreign-ca', { caFile: foreignCaFile }));

    const code = await agent.exited;

    expect(code, agent.output()).toBe(78);
    const lines = agent.lines();
    const failures = lines.filter((line) => line.message.startsWith('connection failed'));
    expect(failures.length).toBeGreaterThanOrEqual(1);
    for (const failure of failures) {
      expect(failure).toMatchObject({ problem: 'tls', check: expect.stringMatching(/caFile .*clock/) });
    }
    expect(lines.find((line) => line.message.startsWith('cannot connect to the broker'))).toMatchObject({
      level: 'error',
      problem: 'tls',
      exitCode: 78,
      firstConnectionBudgetSeconds: BUDGET_SECONDS,
    });
  }, 120_000);

  it('with a port nobody listens on: retries with backoff until the budget is spent, then exits 69 naming the endpoint', async () => {
    const port = await freePort();
    const agent = runAgent(await writeAgentConfig('no-listener', { port }));

    const code = await agent.exited;

    expect(code, agent.output()).toBe(69);
    const lines = agent.lines();
    const retries = lines.filter((line) => line.message === 'connection failed; retrying');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0]).toMatchObject({ level: 'warn', attempt: 1, port, problem: 'unreachable' });
    expect(retries[0]?.check).toContain(`endpoint (localhost) and port (${port})`);
    expect(lines.find((line) => line.message === 'connection failed; giving up')).toMatchObject({
      attempt: retries.length + 1,
      problem: 'unreachable',
    });
    expect(lines.find((line) => line.message.startsWith('cannot connect to the broker'))).toMatchObject({
      problem: 'unreachable',
      exitCode: 69,
    });
  }, 60_000);

  it('the link alone: TLS files that cannot make a context give up at once with exit code 78', async () => {
    const link = new MqttLink({
      endpoint: 'localhost',
      port: broker.port,
      clientId: ROBOT,
      certificateFile: robot.certificateFile,
      privateKeyFile: otherKey,
      caFile: broker.caFile,
      keepAliveSeconds: 30,
      reconnect: { minSeconds: 1, maxSeconds: 1 },
    });
    try {
      const error = await link.start().catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(LinkGaveUpError);
      expect(error).toMatchObject({ problem: 'credentials', exitCode: 78, attempts: 0 });
    } finally {
      await link.stop();
    }
  });
});

describe('an agent that did connect', () => {
  it('outlives an outage longer than the first-connection budget, and reconnects', async () => {
    const ca = await CertificateAuthority.create({ commonName: 'Outage CA' });
    let current = await startMosquitto({ ca });
    const port = current.port;
    const files = await current.issueClient(ROBOT);
    const credentials = {
      certificateFile: join(workDir, 'outage.crt'),
      privateKeyFile: join(workDir, 'outage.key'),
      caFile: join(workDir, 'outage-ca.pem'),
    };
    await writeFile(credentials.certificateFile, files.certificate.certificatePem);
    await writeFile(credentials.privateKeyFile, files.certificate.privateKeyPem);
    await writeFile(credentials.caFile, ca.certificatePem);
    const agent = runAgent(await writeAgentConfig('outage', { port, firstConnectionBudgetSeconds: 1, ...credentials }));
    try {
      const logged = (message: string) => agent.lines().filter((line) => line.message === message);
      // The agent process starting (tsx compiles it first): longer than the default wait.
      await expect.poll(() => logged('connected'), { message: 'the agent to connect', timeout: 30_000 }).toHaveLength(1);

      await current.stop();
      // A listener that hangs up on every connection: the SDK's reconnections, 1 s apart, are counted as they come.
      // Three of them span at least 2 s, twice the budget.
      let attempts = 0;
      const hangUp = createServer((socket) => {
        attempts += 1;
        socket.destroy();
      });
      await new Promise<void>((resolve) => hangUp.listen(port, '127.0.0.1', resolve));
      try {
        await expect.poll(() => attempts, { message: 'three reconnection attempts' }).toBeGreaterThanOrEqual(3);
      } finally {
        await new Promise<void>((resolve) => hangUp.close(() => resolve()));
      }
      expect(agent.child.exitCode, agent.output()).toBeNull();

      current = await startMosquitto({ ca, port });
      await expect.poll(() => logged('reconnected'), { message: 'the agent to reconnect' }).toHaveLength(1);
      expect(agent.child.exitCode).toBeNull();
    } finally {
      await current.stop();
    }
  }, 120_000);
});
