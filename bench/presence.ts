/**
 * `npm run bench:presence [-- --robots 1000]`: a boot storm. The local cloud runs as its own process (as with
 * `npm start`); this process issues every robot a real certificate from the local CA, opens a live feed subscribed
 * to the whole fleet, then connects all robots at once as light MQTT clients (mqtt.js over mTLS, client id = thing
 * name). It prints connect → `RobotConnected` on the WebSocket latency (p50/p99/max) and the time until
 * `GET /api/v2/metrics` counts every robot online. Aim: p99 ≤ 250 ms, all online within 2 s (legacy: 120 s).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { CertificateAuthority, type IssuedCertificate } from '../local/certificate-authority.js';
import { ThingRegistry } from '../local/thing-registry.js';
import {
  freePorts,
  freshStateDir,
  getJson,
  removeStateDir,
  startCloudProcess,
  waitFor,
} from '../test/support/local-cloud-process.js';

const { values } = parseArgs({
  options: {
    robots: { type: 'string', default: '1000' },
    'keep-state': { type: 'boolean', default: false },
    profile: { type: 'string' },
  },
});
const robots = Number(values.robots);
if (!Number.isInteger(robots) || robots < 1 || robots > 10_000) {
  process.stderr.write('--robots must be a whole number from 1 to 10000\n');
  process.exit(2);
}

const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
const ms = (value: number) => `${value.toFixed(0)} ms`;

const stateDir = await freshStateDir();
const ports = await freePorts();
process.stdout.write(`Boot storm of ${robots} robots against the local cloud (state ${stateDir})\n`);
const cloud = await startCloudProcess({
  stateDir,
  ports,
  robots: 0,
  minKeepAliveSeconds: 30,
  // `--profile <dir>`: a CPU profile of the local cloud process, written when it stops.
  ...(values.profile ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] } : {}),
});
const clients: MqttClient[] = [];
let socket: WebSocket | undefined;
try {
  const { endpoints } = cloud;
  const names = Array.from({ length: robots }, (_, index) => `${index % 3 === 2 ? 'xle' : 'lekiwi'}-BOOT${String(index + 1).padStart(5, '0')}`);

  const issuing = performance.now();
  const ca = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
  const certificates = new Map<string, IssuedCertificate>();
  for (const name of names) certificates.set(name, await ca.issueClientCertificate(name));
  await ThingRegistry.in(stateDir).attachAll(names.map((thingName) => ({ thingName, certificateId: certificates.get(thingName)!.certificateId })));
  process.stdout.write(`Issued and registered ${robots} certificates in ${ms(performance.now() - issuing)}\n`);

  // The live feed, as the dashboard has it.
  const token = (await readFile(endpoints.tokens.operator, 'utf8')).trim();
  socket = new WebSocket(`${endpoints.webSocketUrl}?token=${encodeURIComponent(token)}`);
  const seenAt = new Map<string, number>();
  socket.on('message', (data) => {
    const message = JSON.parse(String(data)) as { type?: string; robotId?: string };
    if (message.type === 'RobotConnected' && message.robotId && !seenAt.has(message.robotId)) seenAt.set(message.robotId, performance.now());
  });
  await new Promise<void>((resolve, reject) => {
    socket!.once('open', () => resolve());
    socket!.once('error', reject);
  });
  const subscribed = new Promise<void>((resolve) =>
    socket!.on('message', (data) => JSON.parse(String(data)).type === 'Subscribed' && resolve()),
  );
  socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['*'] }));
  await subscribed;

  // The storm: every robot at once.
  const startedAt = new Map<string, number>();
  const connackAt = new Map<string, number>();
  const failures: string[] = [];
  const storm = performance.now();
  await Promise.all(
    names.map(async (name) => {
      const certificate = certificates.get(name)!;
      startedAt.set(name, performance.now());
      try {
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
        connackAt.set(name, performance.now());
        clients.push(client);
      } catch (error) {
        failures.push(`${name}: ${(error as Error).message}`);
      }
    }),
  );
  const allConnected = performance.now() - storm;

  await waitFor(() => seenAt.size >= connackAt.size, { timeoutMs: 120_000, what: 'a RobotConnected for every robot' });
  const allOnFeed = performance.now() - storm;
  let allOnline = NaN;
  await waitFor(
    async () => {
      const { body } = await getJson(endpoints, '/metrics');
      if ((body as { byStatus?: { online?: number } }).byStatus?.online === connackAt.size) {
        allOnline = performance.now() - storm;
        return true;
      }
      return false;
    },
    { timeoutMs: 120_000, what: 'every robot online in GET /api/v2/metrics' },
  );

  const fromConnack = names.filter((name) => connackAt.has(name)).map((name) => seenAt.get(name)! - connackAt.get(name)!).sort((a, b) => a - b);
  const fromStart = names.filter((name) => connackAt.has(name)).map((name) => seenAt.get(name)! - startedAt.get(name)!).sort((a, b) => a - b);
  const handshake = names.filter((name) => connackAt.has(name)).map((name) => connackAt.get(name)! - startedAt.get(name)!).sort((a, b) => a - b);
  process.stdout.write(
    [
      `Robots connected: ${connackAt.size}/${robots}${failures.length ? ` (${failures.length} failed: ${failures.slice(0, 3).join('; ')})` : ''}`,
      `TLS + MQTT connect (CONNACK):             p50 ${ms(percentile(handshake, 50))}  p99 ${ms(percentile(handshake, 99))}  max ${ms(handshake.at(-1) ?? NaN)}`,
      `CONNACK → RobotConnected on the WebSocket: p50 ${ms(percentile(fromConnack, 50))}  p99 ${ms(percentile(fromConnack, 99))}  max ${ms(fromConnack.at(-1) ?? NaN)}`,
      `connect start → RobotConnected:           p50 ${ms(percentile(fromStart, 50))}  p99 ${ms(percentile(fromStart, 99))}  max ${ms(fromStart.at(-1) ?? NaN)}`,
      `All CONNACKed after ${ms(allConnected)}; all on the live feed after ${ms(allOnFeed)}; all online in GET /api/v2/metrics after ${ms(allOnline)}`,
      `Aim: p99 ≤ 250 ms, all online ≤ 2000 ms (legacy system: 120 s)`,
    ].join('\n') + '\n',
  );
} finally {
  socket?.close();
  await Promise.all(clients.map((client) => client.endAsync(true).catch(() => {})));
  await cloud.stop();
  if (!values['keep-state']) await removeStateDir(stateDir);
}
