import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Logger, LogFields } from '../../agent/adapters/json-log.js';
import { MqttLink, type MqttLinkOptions } from '../../agent/adapters/mqtt-link.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { TelemetrySample } from '../../schemas/device.js';
import { freePort, startMosquitto, type Mosquitto, type MosquittoCredentials } from '../support/mosquitto.js';
import { POLL } from '../support/poll.js';

/**
 * The agent against a real broker: Debian's Mosquitto 2 with mTLS (certificates from the local CA: EC P-256, SEC1
 * keys), the certificate's CN as the username, and an ACL mirroring the thing policy. The agent runs as its own
 * process, exactly as on a robot.
 *
 * Basic Ingest is off here (`basicIngest: false`): `$aws/rules/...` is an IoT Core feature, and Mosquitto's ACL
 * cannot grant "publish to the rule for your own topic" the way the thing policy does. The agent publishes telemetry
 * on `dt/heartbeat/<thing>/telemetry` instead, which is what the rule listens to anyway.
 */

const ROBOT = 'lekiwi-LK0001';
const OTHER_ROBOT = 'lekiwi-LK0002';
const OBSERVER = 'observer';

let broker: Mosquitto;
let workDir: string;
let robot: MosquittoCredentials;
let otherRobot: MosquittoCredentials;
let observer: mqtt.MqttClient;
const received: { topic: string; payload: string; at: number }[] = [];
const children = new Set<ChildProcessWithoutNullStreams>();

beforeAll(async () => {
  broker = await startMosquitto({ admins: [OBSERVER] });
  workDir = await mkdtemp(join(tmpdir(), 'heartbeat-agent-mosquitto-'));
  robot = await broker.issueClient(ROBOT);
  otherRobot = await broker.issueClient(OTHER_ROBOT);
  const admin = await broker.issueClient(OBSERVER);
  observer = await mqtt.connectAsync(`mqtts://localhost:${broker.port}`, {
    clientId: OBSERVER,
    protocolVersion: 4,
    key: await readFile(admin.privateKeyFile),
    cert: await readFile(admin.certificateFile),
    ca: await readFile(broker.caFile),
    reconnectPeriod: 0,
  });
  observer.on('message', (topic, payload) => received.push({ topic, payload: payload.toString('utf8'), at: Date.now() }));
  await observer.subscribeAsync('#', { qos: 1 });
});

afterEach(async () => {
  // tsx → node: the whole process group, so no agent outlives its test.
  for (const child of children) killGroup(child, 'SIGKILL');
  children.clear();
});

function killGroup(child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

afterAll(async () => {
  await observer?.endAsync(true);
  await broker?.stop();
  await rm(workDir, { recursive: true, force: true });
});

/** An agent process starting (tsx compiles it first) may take longer than the default wait; within the test's 30 s. */
const PROCESS_START = { ...POLL, timeout: 25_000 };

const messagesOn = (topic: string, since = 0) => received.filter((message) => message.topic === topic && message.at >= since);

async function writeAgentConfig(name: string, fields: Record<string, unknown> = {}): Promise<string> {
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
      keepAliveSeconds: 30,
      stateDir: join(workDir, `${name}-state`),
      basicIngest: false,
      // Only the first sample, report-now and a heartbeat far away: every extra message in the test is news.
      telemetry: { sampleIntervalMs: 500, minIntervalMs: 120_000, maxIntervalMs: 600_000 },
      logLevel: 'debug',
      ...fields,
    }),
  );
  return path;
}

interface AgentProcess {
  readonly child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `tsx agent/main.ts …`: what `npx tsx` / `npm run agent` run, without npm's own process on top. npm 11 does not pass
 * SIGTERM on to its child (it dies of it and leaves the agent running), so a signal sent to npm alone proves nothing;
 * tsx does relay it and exits with the agent's own exit code.
 */
function runAgent(args: readonly string[]): AgentProcess {
  const child = spawn(join(process.cwd(), 'node_modules', '.bin', 'tsx'), ['agent/main.ts', ...args], {
    cwd: process.cwd(),
    env: { ...process.env, LOG_LEVEL: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
    // Its own process group, so a test can kill the whole tree (a power cut) and cleanup leaves nothing behind.
    detached: true,
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Every stdout line must be one JSON object with time, level and message. */
function logLines(output: string): { time: string; level: string; message: string; [field: string]: unknown }[] {
  return output
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => {
      const parsed = JSON.parse(line) as { time: string; level: string; message: string };
      expect(parsed).toMatchObject({ time: expect.any(String), level: expect.any(String), message: expect.any(String) });
      return parsed;
    });
}

describe('agent process against Mosquitto', () => {
  it('publishes valid telemetry, answers report-now, and disconnects cleanly on SIGTERM with exit 0', async () => {
    const startedAt = Date.now();
    const agent = runAgent(['--config', await writeAgentConfig('main')]);
    const telemetryTopic = `dt/heartbeat/${ROBOT}/telemetry`;

    // Telemetry arrives, and it is a sample the cloud accepts.
    const first = await vi.waitFor(() => {
      const message = messagesOn(telemetryTopic, startedAt)[0];
      expect(message, `telemetry (agent log: ${agent.stdout()}${agent.stderr()})`).toBeDefined();
      return message!;
    }, PROCESS_START);
    const sample = TelemetrySample.parse(JSON.parse(first.payload));
    expect(sample.agentVersion).toBe('0.1.0');
    expect(sample.memoryPercent).toBeGreaterThan(0);
    expect(sample.uptimeSeconds).toBeGreaterThan(0);
    expect(Date.parse(sample.sampledAt)).toBeGreaterThanOrEqual(startedAt - 1_000);

    // report-now, once the agent's command subscription is in place.
    await broker.waitForLog(new RegExp(`${ROBOT} 1 cmd/heartbeat/${ROBOT}/\\+`));
    const asked = Date.now();
    await observer.publishAsync(`cmd/heartbeat/${ROBOT}/report-now`, JSON.stringify({ requestId: 'req-1' }), { qos: 1 });
    const reply = await vi.waitFor(() => {
      const message = messagesOn(`cmd/heartbeat/${ROBOT}/report-now/reply`, asked)[0];
      expect(message, 'the report-now reply').toBeDefined();
      return message!;
    }, POLL);
    const answer = JSON.parse(reply.payload) as { requestId: string; sentAt: string };
    expect(answer.requestId).toBe('req-1');
    expect(Date.parse(answer.sentAt)).toBeGreaterThanOrEqual(asked - 1_000);
    // The sample it promised went out too, inside the two-minute minimum interval.
    expect(messagesOn(telemetryTopic, asked)).toHaveLength(1);

    // A malformed command is logged and changes nothing.
    await observer.publishAsync(`cmd/heartbeat/${ROBOT}/report-now`, '{not json', { qos: 1 });
    await expect.poll(() => agent.stdout(), { message: 'the malformed command to be logged' }).toContain('malformed command ignored');
    expect(agent.child.exitCode).toBeNull();

    // SIGTERM: a clean DISCONNECT (Mosquitto logs receiving it), then exit 0.
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    await broker.waitForLog(new RegExp(`Received DISCONNECT from ${ROBOT}`));
    const lines = logLines(agent.stdout());
    expect(lines.map((line) => line.message)).toEqual(
      expect.arrayContaining(['connected', 'agent started', 'stopping', 'disconnected', 'agent stopped']),
    );
    expect(lines.find((line) => line.message === 'disconnected')).toMatchObject({ clean: true, thingName: ROBOT });
  });

  it('a killed agent leaves no DISCONNECT behind (what the clean-stop check tells apart)', async () => {
    const before = broker.log().length;
    const agent = runAgent(['--config', await writeAgentConfig('killed')]);
    await expect.poll(() => broker.log().slice(before), { message: 'the agent to connect', ...PROCESS_START }).toContain(`as ${ROBOT} `);
    // A power cut: every process of the tree at once, no chance to say goodbye.
    killGroup(agent.child, 'SIGKILL');
    await agent.exited;
    // Mosquitto words an unclean end by what the socket did ("closed its connection", "disconnected: Protocol
    // error", …); a clean one is only "Received DISCONNECT" followed by "disconnected." with nothing after it.
    const slice = () => broker.log().slice(before);
    await expect
      .poll(slice, { message: 'Mosquitto to notice the dead agent' })
      .toMatch(new RegExp(`Client ${ROBOT} (closed its connection|disconnected: |has exceeded timeout)|Socket error on client ${ROBOT}`));
    expect(slice()).not.toMatch(new RegExp(`Received DISCONNECT from ${ROBOT}`));
  });

  it('prints the usage for --help (exit 0) and for a bad command line (exit 2)', async () => {
    const help = runAgent(['--help']);
    expect((await help.exited).code).toBe(0);
    expect(help.stdout()).toMatch(/Usage: npm run agent -- --config <agent\.json>/);

    const bad = runAgent(['--conifg', 'x.json']);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toMatch(/Unknown option '--conifg'/);
    expect(bad.stderr()).toMatch(/Usage:/);

    const missing = runAgent([]);
    expect((await missing.exited).code).toBe(2);
    expect(missing.stderr()).toMatch(/--config <file> is required/);
  });

  it('exits 1 with a JSON error naming the field of a bad config', async () => {
    const agent = runAgent(['--config', await writeAgentConfig('bad', { keepAliveSeconds: 5 })]);
    expect((await agent.exited).code).toBe(1);
    const [line] = logLines(agent.stdout());
    expect(line).toMatchObject({ level: 'error' });
    expect(line?.message).toMatch(/keepAliveSeconds: must be 30–1200/);
  });
});

/** Collects the link's log lines for assertions. */
class RecordingLog implements Logger {
  readonly lines: { level: string; message: string; fields?: LogFields }[] = [];
  debug = (message: string, fields?: LogFields) => void this.lines.push({ level: 'debug', message, fields });
  info = (message: string, fields?: LogFields) => void this.lines.push({ level: 'info', message, fields });
  warn = (message: string, fields?: LogFields) => void this.lines.push({ level: 'warn', message, fields });
  error = (message: string, fields?: LogFields) => void this.lines.push({ level: 'error', message, fields });
  child = () => this;
}

function linkOptions(credentials: MosquittoCredentials, clientId: string, port = broker.port, caFile = broker.caFile): MqttLinkOptions {
  return {
    endpoint: 'localhost',
    port,
    clientId,
    certificateFile: credentials.certificateFile,
    privateKeyFile: credentials.privateKeyFile,
    caFile,
    keepAliveSeconds: 30,
    reconnect: { minSeconds: 1, maxSeconds: 2 },
  };
}

describe('MqttLink against Mosquitto', () => {
  it("cannot deliver to another robot's topics nor read its commands", async () => {
    const link = new MqttLink(linkOptions(robot, ROBOT));
    try {
      const commands: string[] = [];
      await link.start();
      await link.subscribe(`cmd/heartbeat/${ROBOT}/+`, (topic) => commands.push(topic));
      await link.subscribe(`cmd/heartbeat/${OTHER_ROBOT}/+`, (topic) => commands.push(topic));
      const since = Date.now();

      // MQTT 3.1.1 has no way to refuse a publish: Mosquitto acknowledges it and drops it.
      await link.publish(`dt/heartbeat/${OTHER_ROBOT}/telemetry`, JSON.stringify({ forged: true }), 1);
      await link.publish(`dt/heartbeat/${ROBOT}/events`, JSON.stringify({ marker: true }), 1);
      await observer.publishAsync(`cmd/heartbeat/${OTHER_ROBOT}/report-now`, '{}', { qos: 1 });
      await observer.publishAsync(`cmd/heartbeat/${ROBOT}/report-now`, '{}', { qos: 1 });

      // Each client's messages arrive in order, so once the marker is in, the forged message would have been too.
      await expect.poll(() => messagesOn(`dt/heartbeat/${ROBOT}/events`, since), { message: 'the marker' }).not.toEqual([]);
      await expect.poll(() => commands, { message: 'the own command' }).not.toEqual([]);
      expect(messagesOn(`dt/heartbeat/${OTHER_ROBOT}/telemetry`, since)).toEqual([]);
      expect(broker.log()).toMatch(new RegExp(`Denied PUBLISH from ${ROBOT} .*'dt/heartbeat/${OTHER_ROBOT}/telemetry'`));
      expect(commands).toEqual([`cmd/heartbeat/${ROBOT}/report-now`]);

      // And the other robot, with its own certificate, can use its own topics.
      const other = new MqttLink(linkOptions(otherRobot, OTHER_ROBOT));
      try {
        await other.start();
        await other.publish(`dt/heartbeat/${OTHER_ROBOT}/telemetry`, JSON.stringify({ genuine: true }), 1);
        await expect
          .poll(() => messagesOn(`dt/heartbeat/${OTHER_ROBOT}/telemetry`, since).map((message) => JSON.parse(message.payload)), { message: 'the genuine message' })
          .toEqual([{ genuine: true }]);
      } finally {
        await other.stop();
      }
    } finally {
      await link.stop();
    }
  });

  it('retries a failed first connection with backoff, logging each attempt, until the broker is up', async () => {
    const ca = await CertificateAuthority.create({ commonName: 'Late broker CA' });
    const caFile = join(workDir, 'late-ca.pem');
    await writeFile(caFile, ca.certificatePem);
    const issued = await ca.issueClientCertificate(ROBOT);
    const credentials = { certificateFile: join(workDir, 'late.crt'), privateKeyFile: join(workDir, 'late.key') };
    await writeFile(credentials.certificateFile, issued.certificatePem);
    await writeFile(credentials.privateKeyFile, issued.privateKeyPem);
    const port = await freePort();
    const log = new RecordingLog();
    const link = new MqttLink(linkOptions(credentials, ROBOT, port, caFile), { log });
    let late: Mosquitto | undefined;
    try {
      let connected = false;
      link.on('connected', () => (connected = true));
      const started = link.start();
      const failures = () => log.lines.filter((line) => line.message === 'connection failed; retrying');
      await expect.poll(() => failures().length, { message: 'two failed attempts' }).toBeGreaterThanOrEqual(2);
      for (const [index, failure] of failures().entries()) {
        expect(failure.fields).toMatchObject({ attempt: index + 1, port });
        expect(String((failure.fields?.error as Error).message)).toMatch(/CONNECTION_REFUSED/);
        // Full jitter under a ceiling of min(2 s, 1 s · 2^attempt).
        expect(failure.fields?.nextDelayMs).toBeGreaterThanOrEqual(0);
        expect(failure.fields?.nextDelayMs).toBeLessThanOrEqual(Math.min(2_000, 1_000 * 2 ** index));
      }
      expect(link.isConnected).toBe(false);

      late = await startMosquitto({ ca, port });
      await started;
      expect(link.isConnected).toBe(true);
      expect(connected).toBe(true);
    } finally {
      await link.stop();
      await link.stop();
      await late?.stop();
    }
  });

  it('after the broker comes back, resumes and subscribes again (clean session), so commands still arrive', async () => {
    const ca = await CertificateAuthority.create({ commonName: 'Restarting broker CA' });
    let current = await startMosquitto({ ca, admins: [OBSERVER] });
    const port = current.port;
    const caFile = join(workDir, 'restart-ca.pem');
    await writeFile(caFile, ca.certificatePem);
    const robotFiles = await current.issueClient(ROBOT);
    const credentials = { certificateFile: join(workDir, 'restart.crt'), privateKeyFile: join(workDir, 'restart.key') };
    await writeFile(credentials.certificateFile, await readFile(robotFiles.certificateFile));
    await writeFile(credentials.privateKeyFile, await readFile(robotFiles.privateKeyFile));
    const adminCert = await ca.issueClientCertificate(OBSERVER);
    const link = new MqttLink(linkOptions(credentials, ROBOT, port, caFile));
    const events: string[] = [];
    link.on('connected', () => events.push('connected'));
    link.on('interrupted', () => events.push('interrupted'));
    link.on('resumed', ({ sessionPresent }) => events.push(`resumed (session ${sessionPresent})`));
    const commands: string[] = [];
    try {
      await link.subscribe(`cmd/heartbeat/${ROBOT}/+`, (_topic, payload) => commands.push(payload.toString()));
      await link.start();
      await current.waitForLog(new RegExp(`${ROBOT} 1 cmd/heartbeat/${ROBOT}/\\+`));

      await current.stop();
      await expect.poll(() => events, { message: 'the link to notice the broker is gone' }).toContain('interrupted');
      expect(link.isConnected).toBe(false);
      await expect(link.publish(`dt/heartbeat/${ROBOT}/telemetry`, '{}', 0)).rejects.toThrow(/not connected/);

      current = await startMosquitto({ ca, port, admins: [OBSERVER] });
      await expect.poll(() => events, { message: 'the link to resume' }).toContain('resumed (session false)');
      // The new broker knows nothing of the old subscription: the link must have subscribed again by itself.
      await current.waitForLog(new RegExp(`${ROBOT} 1 cmd/heartbeat/${ROBOT}/\\+`));
      const admin = await mqtt.connectAsync(`mqtts://localhost:${port}`, {
        clientId: OBSERVER,
        protocolVersion: 4,
        key: adminCert.privateKeyPem,
        cert: adminCert.certificatePem,
        ca: ca.certificatePem,
        reconnectPeriod: 0,
      });
      try {
        await admin.publishAsync(`cmd/heartbeat/${ROBOT}/report-now`, '{"requestId":"after-restart"}', { qos: 1 });
      } finally {
        await admin.endAsync();
      }
      await expect.poll(() => commands, { message: 'the command after the restart' }).toEqual(['{"requestId":"after-restart"}']);
      expect(events).toEqual(['connected', 'interrupted', 'resumed (session false)']);
    } finally {
      await link.stop();
      await current.stop();
    }
  });

  it('stop() before the broker ever answered ends the retries and rejects start()', async () => {
    const link = new MqttLink(linkOptions(robot, ROBOT, await freePort()));
    const started = link.start();
    await link.stop();
    await expect(started).rejects.toThrow(/stopped/);
    await expect(link.publish(`dt/heartbeat/${ROBOT}/telemetry`, '{}', 0)).rejects.toThrow(/not connected/);
  });
});
