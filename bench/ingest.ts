/**
 * `npm run bench:ingest [-- --backlog 10000 --robots 1000 --events 20]`: the ordered ingest channel under the two
 * loads that lost data before it existed. The local cloud runs as its own process (as with `npm start`).
 *
 * (a) One robot comes back online with a backlog: its real agent process starts with `--backlog` events already in
 *     its on-disk queue. Prints the time until the log holds them all and until the agent's queue is empty (it
 *     empties only as the cloud's acknowledgements arrive), events/s, and events lost (must be 0).
 * (b) A burst: `--robots` robots (light mqtt.js clients with real certificates) each send `--events` events at once,
 *     one message per event with its outbox position, as the agent does. Prints p50/p99 of event → acknowledgement
 *     (the log has it), event → live WebSocket, and how many events each consumer invocation handled.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import mqtt, { type MqttClient } from 'mqtt';
import { EventQueue } from '../agent/adapters/event-queue.js';
import { DynamoEventLog } from '../functions/adapters/dynamo-event-log.js';
import { CertificateAuthority, type IssuedCertificate } from '../local/certificate-authority.js';
import { LOCAL_AWS } from '../local/dynamodb-local.js';
import { ThingRegistry } from '../local/thing-registry.js';
import { EventsAck, topics, type AgentEvent } from '../schemas/index.js';
import {
  connectLiveClient,
  freePorts,
  freshStateDir,
  issueCertificate,
  removeStateDir,
  startAgentProcess,
  startCloudProcess,
  waitFor,
  type CloudProcess,
} from '../test/support/local-cloud-process.js';

const { values } = parseArgs({
  options: {
    backlog: { type: 'string', default: '10000' },
    robots: { type: 'string', default: '1000' },
    events: { type: 'string', default: '20' },
    'keep-state': { type: 'boolean', default: false },
  },
});
const backlog = Number(values.backlog);
const robots = Number(values.robots);
const eventsPerRobot = Number(values.events);
for (const [name, value, max] of [['backlog', backlog, 10_000], ['robots', robots, 5_000], ['events', eventsPerRobot, 100]] as const) {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    process.stderr.write(`--${name} must be a whole number from 0 to ${max}\n`);
    process.exit(2);
  }
}

const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
const ms = (value: number) => `${value.toFixed(0)} ms`;
const say = (line: string) => process.stdout.write(`${line}\n`);

/** Alternating starts and stops, so every one of them is a fact the log records. */
function teleoperationEvents(count: number, prefix: string): AgentEvent[] {
  const start = Date.now() - count * 1000;
  return Array.from({ length: count }, (_, n) => {
    const occurredAt = new Date(start + n * 1000).toISOString();
    const eventId = `${prefix}-${String(n).padStart(6, '0')}`;
    return n % 2 === 0
      ? { eventId, occurredAt, type: 'TeleoperationStarted', data: { signals: ['actions'], operatorAddress: '192.0.2.7' } }
      : { eventId, occurredAt, type: 'TeleoperationStopped', data: { reason: 'idle', durationMs: 1000 } };
  });
}

async function ingestStats(cloud: CloudProcess): Promise<{ invocations: number; records: number }> {
  const response = await fetch(new URL('/health', cloud.endpoints.pageUrl));
  const body = (await response.json()) as { ingest?: { invocations: number; records: number } };
  return body.ingest ?? { invocations: NaN, records: NaN };
}

async function backlogRun(cloud: CloudProcess, stateDir: string, log: DynamoEventLog): Promise<void> {
  const robot = 'lekiwi-BACKLOG1';
  const config = await issueCertificate(stateDir, robot, 30);
  const queueDir = join(stateDir, 'certs', robot, 'agent-state', 'queue');
  const queue = new EventQueue({ directory: queueDir, log: () => {} });
  await queue.open();
  const events = teleoperationEvents(backlog, 'backlog');
  const filling = performance.now();
  for (const event of events) await queue.enqueue(event);
  await queue.close();
  say(`(a) ${backlog} events queued on disk in ${ms(performance.now() - filling)}; starting the agent`);

  const started = performance.now();
  const agent = startAgentProcess(config);
  let logged = NaN;
  let emptied = NaN;
  try {
    await waitFor(
      async () => {
        const head = await log.readHead(robot);
        if (Number.isNaN(logged) && (head?.lastSeq ?? 0) >= backlog) logged = performance.now() - started;
        const state = await readFile(join(queueDir, 'state.json'), 'utf8').catch(() => '{}');
        const acknowledged = (JSON.parse(state) as { acknowledgedSeq?: number }).acknowledgedSeq ?? 0;
        if (acknowledged >= backlog) emptied = performance.now() - started;
        return !Number.isNaN(emptied) && !Number.isNaN(logged);
      },
      { timeoutMs: 300_000, what: 'the backlog in the log and the queue empty', describe: () => agent.output().slice(-2000) },
    );
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
  const inLog: string[] = [];
  for (let afterSeq: number | null = 0; afterSeq !== null; ) {
    const page = await log.readEvents(robot, { afterSeq, limit: 1000 });
    // The robot's connect and disconnect are in its log too: compare the events it queued.
    inLog.push(...page.events.filter((entry) => entry.event.type.startsWith('Teleoperation')).map((entry) => entry.event.eventId));
    afterSeq = page.nextAfterSeq;
  }
  const expected = events.map((event) => event.eventId);
  const lost = expected.filter((id) => !new Set(inLog).has(id)).length;
  const inOrder = JSON.stringify(inLog) === JSON.stringify(expected);
  say(`    all in the log after ${ms(logged)} (${(backlog / (logged / 1000)).toFixed(0)} events/s); agent queue empty after ${ms(emptied)}`);
  say(`    events lost: ${lost}; in the log ${inLog.length} (${inOrder ? 'exactly once, in queue order' : 'NOT in queue order or not once each'})`);
  say(`    aim: drained in ≤ 30 s, 0 lost`);
}

async function burstRun(cloud: CloudProcess, stateDir: string): Promise<void> {
  const { endpoints } = cloud;
  const names = Array.from({ length: robots }, (_, index) => `lekiwi-BURST${String(index + 1).padStart(5, '0')}`);
  const ca = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
  const certificates = new Map<string, IssuedCertificate>();
  for (const name of names) certificates.set(name, await ca.issueClientCertificate(name));
  await ThingRegistry.in(stateDir).attachAll(names.map((thingName) => ({ thingName, certificateId: certificates.get(thingName)!.certificateId })));

  // The live feed, as the dashboard has it. Live messages name no eventId; each event of a robot here has its own time.
  const feed = await connectLiveClient(endpoints);
  const onFeed = new Map<string, number>();
  feed.onMessage((message) => {
    if (message.type === 'TeleoperationStarted' || message.type === 'TeleoperationStopped') {
      const key = `${String(message.robotId)}:${String(message.at)}`;
      if (!onFeed.has(key)) onFeed.set(key, performance.now());
    }
  });

  const clients: MqttClient[] = [];
  try {
    await Promise.all(
      names.map(async (name) => {
        const certificate = certificates.get(name)!;
        const client = await mqtt.connectAsync(`mqtts://localhost:${endpoints.mqttPort}`, {
          clientId: name,
          cert: certificate.certificatePem,
          key: certificate.privateKeyPem,
          ca: ca.certificatePem,
          protocolVersion: 4,
          keepalive: 60,
          reconnectPeriod: 0,
          connectTimeout: 60_000,
        });
        await client.subscribeAsync(topics.command(name, 'ack'), { qos: 1 });
        clients.push(client);
      }),
    );
    say(`(b) ${robots} robots connected; each sends ${eventsPerRobot} events at once`);
    const before = await ingestStats(cloud);
    const sentAt = new Map<string, number[]>();
    const occurredAt = new Map<string, string[]>();
    const ackedAt = new Map<string, number[]>();
    const through = new Map<string, number>();
    for (const client of clients) {
      const name = client.options.clientId!;
      client.on('message', (_topic, payload) => {
        const ack = EventsAck.safeParse(JSON.parse(payload.toString()));
        const mark = ack.success ? ack.data.outbox?.through : undefined;
        if (mark === undefined) return;
        const seen = through.get(name) ?? 0;
        const times = ackedAt.get(name) ?? [];
        for (let position = seen + 1; position <= mark; position++) times[position - 1] = performance.now();
        ackedAt.set(name, times);
        through.set(name, Math.max(seen, mark));
      });
    }
    const publishFailures: string[] = [];
    let disconnected = 0;
    for (const client of clients) client.on('close', () => (disconnected += 1));
    const storm = performance.now();
    await Promise.all(
      clients.map(async (client) => {
        const name = client.options.clientId!;
        const outbox = randomUUID();
        const events = teleoperationEvents(eventsPerRobot, `${name}-burst`);
        const times: number[] = [];
        sentAt.set(name, times);
        occurredAt.set(name, events.map((event) => event.occurredAt));
        events.forEach((event, index) => {
          times[index] = performance.now();
          const message = { outbox: { id: outbox, after: 0, first: index + 1 }, events: [event] };
          // Not awaited: a PUBACK that never comes (a dropped connection) must not hang the benchmark.
          client.publishAsync(topics.events(name), JSON.stringify(message), { qos: 1 }).catch((error: Error) => publishFailures.push(`${name}: ${error.message}`));
        });
      }),
    );
    const total = robots * eventsPerRobot;
    await waitFor(() => [...through.values()].reduce((sum, value) => sum + value, 0) >= total, {
      timeoutMs: 600_000,
      what: 'every event acknowledged',
      describe: () =>
        `acknowledged ${[...through.values()].reduce((sum, value) => sum + value, 0)} of ${total}; ${disconnected} connections closed; ` +
        `publish failures: ${publishFailures.slice(0, 3).join('; ')}\n${cloud.output().slice(-3000)}`,
    });
    const allAcked = performance.now() - storm;
    await waitFor(() => onFeed.size >= total, { timeoutMs: 120_000, what: 'every event on the live feed', describe: () => `${onFeed.size} of ${total}` });
    const after = await ingestStats(cloud);

    const toLog: number[] = [];
    const toFeed: number[] = [];
    for (const name of names) {
      const sent = sentAt.get(name) ?? [];
      const acked = ackedAt.get(name) ?? [];
      sent.forEach((at, index) => {
        toLog.push(acked[index]! - at);
        const feed = onFeed.get(`${name}:${occurredAt.get(name)?.[index]}`);
        if (feed !== undefined) toFeed.push(feed - at);
      });
    }
    toLog.sort((a, b) => a - b);
    toFeed.sort((a, b) => a - b);
    const invocations = after.invocations - before.invocations;
    const records = after.records - before.records;
    say(`    all ${total} acknowledged after ${ms(allAcked)} (${(total / (allAcked / 1000)).toFixed(0)} events/s)`);
    say(`    event → log (acknowledgement at the robot): p50 ${ms(percentile(toLog, 50))}  p99 ${ms(percentile(toLog, 99))}  max ${ms(toLog.at(-1) ?? NaN)}`);
    say(`    event → live WebSocket:                      p50 ${ms(percentile(toFeed, 50))}  p99 ${ms(percentile(toFeed, 99))}  max ${ms(toFeed.at(-1) ?? NaN)}`);
    say(`    consumer invocations: ${invocations} for ${records} records: ${(total / invocations).toFixed(1)} events per invocation (aim ≥ 10)`);
  } finally {
    feed.close();
    await Promise.all(clients.map((client) => client.endAsync(true).catch(() => {})));
  }
}

const stateDir = await freshStateDir();
const ports = await freePorts();
say(`Ingest benchmark against the local cloud (state ${stateDir})`);
const cloud = await startCloudProcess({ stateDir, ports, robots: 0, minKeepAliveSeconds: 30 });
const dynamo = new DynamoDBClient({ ...LOCAL_AWS, endpoint: cloud.endpoints.dynamodbEndpoint });
try {
  const log = new DynamoEventLog({ client: dynamo, tableName: cloud.endpoints.eventLogTable });
  if (backlog > 0) await backlogRun(cloud, stateDir, log);
  if (robots > 0 && eventsPerRobot > 0) await burstRun(cloud, stateDir);
} finally {
  dynamo.destroy();
  await cloud.stop();
  if (!values['keep-state']) await removeStateDir(stateDir);
}
