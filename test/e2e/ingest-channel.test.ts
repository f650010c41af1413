import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import mqtt from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EventQueue } from '../../agent/adapters/event-queue.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { LOCAL_AWS } from '../../local/dynamodb-local.js';
import { topics, type AgentEvent } from '../../schemas/index.js';
import {
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  startAgentProcess,
  startCloudProcess,
  type AgentProcess,
  type CloudProcess,
  type Ports,
} from '../support/local-cloud-process.js';

/**
 * Nothing lost, in order, end to end: real agent processes and a client that is not ours, the local cloud as a
 * process (IoT Core stand-in → ingest stream → robot-ingest → DynamoDB Local), and the faults that lost data before
 * the ordered channel existed: a backlog, a burst, kill -9 of the cloud, DynamoDB Local dying under it.
 */

const TELEOPERATION = new Set(['TeleoperationStarted', 'TeleoperationStopped']);

/** Alternating starts and stops, so every event is a fact the log records. */
function teleoperationEvents(count: number, prefix: string): AgentEvent[] {
  const start = Date.now() - count * 1000 - 60_000;
  return Array.from({ length: count }, (_, n) => {
    const occurredAt = new Date(start + n * 1000).toISOString();
    const eventId = `${prefix}-${String(n).padStart(6, '0')}`;
    return n % 2 === 0
      ? { eventId, occurredAt, type: 'TeleoperationStarted', data: { signals: ['actions'] } }
      : { eventId, occurredAt, type: 'TeleoperationStopped', data: { reason: 'idle' } };
  });
}

interface Setup {
  stateDir: string;
  ports: Ports;
  cloud: CloudProcess;
  log: DynamoEventLog;
  dynamo: DynamoDBClient;
}

const running: { setups: Setup[]; agents: AgentProcess[] } = { setups: [], agents: [] };

async function setUp(): Promise<Setup> {
  const stateDir = await freshStateDir();
  const ports = await freePorts();
  const cloud = await startCloudProcess({ stateDir, ports });
  const dynamo = new DynamoDBClient({ ...LOCAL_AWS, endpoint: cloud.endpoints.dynamodbEndpoint });
  const setup = { stateDir, ports, cloud, dynamo, log: new DynamoEventLog({ client: dynamo, tableName: cloud.endpoints.eventLogTable }) };
  running.setups.push(setup);
  return setup;
}

/** A robot's certificate and agent config (fast reconnects), and its queue already holding `events`. */
async function robotWithBacklog(setup: Setup, robot: string, events: readonly AgentEvent[]): Promise<{ config: string; queueDir: string }> {
  const config = await issueCertificate(setup.stateDir, robot, 30);
  const file = JSON.parse(await readFile(config, 'utf8')) as Record<string, unknown>;
  file.reconnect = { minSeconds: 1, maxSeconds: 2 };
  await writeFile(config, JSON.stringify(file));
  const queueDir = join(setup.stateDir, 'certs', robot, 'agent-state', 'queue');
  const queue = new EventQueue({ directory: queueDir, log: () => {} });
  await queue.open();
  for (const event of events) await queue.enqueue(event);
  await queue.close();
  return { config, queueDir };
}

function startAgent(config: string): AgentProcess {
  const agent = startAgentProcess(config);
  running.agents.push(agent);
  return agent;
}

/** The robot's teleoperation events in the log, in log order, by eventId. */
async function loggedTeleoperation(log: DynamoEventLog, robot: string): Promise<string[]> {
  const ids: string[] = [];
  for (let afterSeq: number | null = 0; afterSeq !== null; ) {
    const page = await log.readEvents(robot, { afterSeq, limit: 1000 });
    ids.push(...page.events.filter((entry) => TELEOPERATION.has(entry.event.type)).map((entry) => entry.event.eventId));
    afterSeq = page.nextAfterSeq;
  }
  return ids;
}

/**
 * How far the agent's queue is acknowledged. The backlog holds positions 1…n; once connected the agent adds its
 * teleoperation statement (TeleoperationState, on every connection) after it, so a queue is drained when this reaches n
 * and may go past it by a statement or two.
 */
async function acknowledgedThrough(queueDir: string): Promise<number> {
  const text = await readFile(join(queueDir, 'state.json'), 'utf8').catch(() => '{}');
  return (JSON.parse(text) as { acknowledgedSeq?: number }).acknowledgedSeq ?? 0;
}

afterEach(async () => {
  for (const agent of running.agents.splice(0)) {
    if (agent.child.exitCode === null && agent.child.signalCode === null) agent.child.kill('SIGKILL');
    await agent.exited;
  }
  for (const setup of running.setups.splice(0)) {
    setup.dynamo.destroy();
    await setup.cloud.stop();
    await removeStateDir(setup.stateDir);
  }
});

afterAll(() => {
  expect(running.agents).toEqual([]);
});

describe('the ordered channel, end to end', () => {
  it('an agent with 10,000 queued events comes online: each is in the log once, in queue order, and leaves the queue only once acknowledged', async () => {
    const setup = await setUp();
    const robot = 'lekiwi-BACKLOG1';
    const events = teleoperationEvents(10_000, 'backlog');
    const { config, queueDir } = await robotWithBacklog(setup, robot, events);
    const agent = startAgent(config);

    // While it drains, the queue never lets go of more than the log holds.
    let samples = 0;
    await expect
      .poll(
        async () => {
          const acknowledged = await acknowledgedThrough(queueDir);
          const logged = (await loggedTeleoperation(setup.log, robot)).length;
          samples += 1;
          expect(Math.min(acknowledged, events.length), 'the agent forgot events the log does not hold').toBeLessThanOrEqual(logged);
          return acknowledged;
        },
        { timeout: 180_000, interval: 500 },
      )
      .toBeGreaterThanOrEqual(10_000);
    expect(samples).toBeGreaterThan(2);
    expect(await loggedTeleoperation(setup.log, robot)).toEqual(events.map((event) => event.eventId));
    expect(agent.output()).not.toMatch(/"level":"error"/);
  }, 240_000);

  it('200 single events in 3 s from a client that is not ours (mqtt.js, QoS 1) are all in the log, in order', async () => {
    const setup = await setUp();
    const robot = 'lekiwi-MQTTJS1';
    await issueCertificate(setup.stateDir, robot, 30);
    const dir = join(setup.stateDir, 'certs', robot);
    const client = await mqtt.connectAsync(`mqtts://localhost:${setup.ports.mqtt}`, {
      clientId: robot,
      cert: await readFile(join(dir, 'certificate.pem.crt')),
      key: await readFile(join(dir, 'private.pem.key')),
      ca: await readFile(setup.cloud.endpoints.caFile),
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    const events = teleoperationEvents(200, 'mqttjs');
    try {
      const sends: Promise<unknown>[] = [];
      for (const event of events) {
        sends.push(client.publishAsync(topics.events(robot), JSON.stringify(event), { qos: 1 }));
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
      await Promise.all(sends);
    } finally {
      await client.endAsync();
    }
    await expect.poll(() => loggedTeleoperation(setup.log, robot), { timeout: 60_000, interval: 250 }).toHaveLength(200);
    expect(await loggedTeleoperation(setup.log, robot)).toEqual(events.map((event) => event.eventId));
  }, 120_000);

  it('kill -9 of the local cloud during a burst from real agents, then a restart: every event is in the log once, in order', async () => {
    const setup = await setUp();
    const robots = ['lekiwi-BURST01', 'lekiwi-BURST02', 'xle-BURST03'];
    const backlogs = new Map(robots.map((robot) => [robot, teleoperationEvents(1500, robot)]));
    const queues = new Map<string, string>();
    for (const robot of robots) {
      const { config, queueDir } = await robotWithBacklog(setup, robot, backlogs.get(robot)!);
      queues.set(robot, queueDir);
      startAgent(config);
    }

    // Killed in the middle of it: some events in the log, not all.
    await expect
      .poll(async () => (await Promise.all(robots.map((robot) => loggedTeleoperation(setup.log, robot)))).flat().length, {
        timeout: 60_000,
        interval: 100,
      })
      .toBeGreaterThan(300);
    setup.cloud.child.kill('SIGKILL');
    await new Promise((resolve) => setup.cloud.child.once('exit', resolve));
    const loggedAtKill = (await Promise.all(robots.map(async (robot) => Math.min(await acknowledgedThrough(queues.get(robot)!), 1500)))).reduce(
      (a, b) => a + b,
      0,
    );
    expect(loggedAtKill).toBeLessThan(4500);

    // The same state dir and ports: the agents reconnect by themselves and send what was not acknowledged.
    setup.cloud = await startCloudProcess({ stateDir: setup.stateDir, ports: setup.ports });
    setup.dynamo.destroy();
    setup.dynamo = new DynamoDBClient({ ...LOCAL_AWS, endpoint: setup.cloud.endpoints.dynamodbEndpoint });
    setup.log = new DynamoEventLog({ client: setup.dynamo, tableName: setup.cloud.endpoints.eventLogTable });
    for (const robot of robots) {
      await expect.poll(() => acknowledgedThrough(queues.get(robot)!), { timeout: 120_000, interval: 500 }).toBeGreaterThanOrEqual(1500);
      expect(await loggedTeleoperation(setup.log, robot)).toEqual(backlogs.get(robot)!.map((event) => event.eventId));
    }
  }, 300_000);

  it('DynamoDB Local killed under the running local cloud: /health says so, it is restarted on its data, and robots are heard again', async () => {
    const setup = await setUp();
    const robot = 'lekiwi-SUPERV1';
    const before = teleoperationEvents(2, 'before');
    const { config, queueDir } = await robotWithBacklog(setup, robot, before);
    startAgent(config);
    await expect.poll(() => acknowledgedThrough(queueDir), { timeout: 60_000 }).toBeGreaterThanOrEqual(2);

    const pid = Number((await readFile(join(setup.stateDir, 'dynamodb.pid'), 'utf8')).trim());
    process.kill(pid, 'SIGKILL');
    const health = async () => {
      const response = await fetch(new URL('/health', setup.cloud.endpoints.pageUrl));
      return { status: response.status, body: (await response.json()) as { parts: { name: string; status: string; restarts: number }[] } };
    };
    // Restarted on the same port and data: healthy again, with the restart counted.
    await expect
      .poll(async () => (await health()).body.parts.find((part) => part.name.startsWith('DynamoDB'))?.restarts, { timeout: 60_000, interval: 250 })
      .toBe(1);
    await expect.poll(async () => (await health()).status, { timeout: 60_000, interval: 250 }).toBe(200);
    expect(setup.cloud.output()).toMatch(/DynamoDB Local \(event log\)/);

    // The history from before is there, and the robot is heard after the restart: its agent leaves, and the log
    // and the read model say so.
    expect(await loggedTeleoperation(setup.log, robot)).toEqual(before.map((event) => event.eventId));
    const agent = running.agents.at(-1)!;
    agent.child.kill('SIGTERM');
    await agent.exited;
    const types = async () =>
      ((await getJson(setup.cloud.endpoints, `/robots/${robot}/events?limit=10`)).body?.items ?? []).map((item: { type: string }) => item.type);
    await expect.poll(types, { timeout: 30_000, interval: 250 }).toContain('RobotDisconnected');
    expect(await types()).toEqual(['RobotDisconnected', 'TeleoperationStopped', 'TeleoperationStarted', 'RobotConnected']);
  }, 180_000);
});
