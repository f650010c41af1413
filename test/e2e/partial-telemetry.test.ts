import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../schemas/index.js';
import {
  connectLiveClient,
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  startCloudProcess,
  type CloudProcess,
  type LiveClient,
  type Ports,
} from '../support/local-cloud-process.js';

/**
 * Telemetry merged per metric, from a client that is not ours: a raw mqtt.js publish of a partial sample through the
 * local cloud process (broker → ingest channel → event log → projector → /api/v2, and the live feed).
 */
const ROBOT = 'lekiwi-PART01';

let stateDir: string;
let ports: Ports;
let cloud: CloudProcess;
let live: LiveClient;

beforeAll(async () => {
  stateDir = await freshStateDir();
  ports = await freePorts();
  cloud = await startCloudProcess({ stateDir, ports });
  live = await connectLiveClient(cloud.endpoints);
}, 180_000);

afterAll(async () => {
  live?.close();
  await cloud?.stop();
  await removeStateDir(stateDir);
});

const robot = async () => (await getJson(cloud.endpoints, `/robots/${ROBOT}`)).body;

describe('a partial sample over raw MQTT', { timeout: 120_000 }, () => {
  it('keeps the other values with their own ages, and shows them stale once the robot is offline', async () => {
    await issueCertificate(stateDir, ROBOT, 30);
    const dir = join(stateDir, 'certs', ROBOT);
    const client = await mqtt.connectAsync(`mqtts://localhost:${ports.mqtt}`, {
      clientId: ROBOT,
      cert: await readFile(join(dir, 'certificate.pem.crt')),
      key: await readFile(join(dir, 'private.pem.key')),
      ca: await readFile(cloud.endpoints.caFile),
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    const full = { sampledAt: new Date(Date.now() - 5_000).toISOString(), cpuPercent: 31, memoryPercent: 42, diskPercent: 53 };
    const partial = { sampledAt: new Date().toISOString() };
    try {
      // A full sample, then one with nothing but its time (schema-valid: every metric is optional)
      await client.publishAsync(topics.telemetry(ROBOT), JSON.stringify(full), { qos: 1 });
      await client.publishAsync(topics.telemetry(ROBOT), JSON.stringify(partial), { qos: 1 });

      // The API still shows CPU, memory and disk, each with the time of the sample that carried it
      await expect.poll(async () => (await robot())?.telemetry?.sampledAt, { message: 'the partial sample in the API' }).toBe(partial.sampledAt);
      const online = await robot();
      expect(online.telemetry).toMatchObject({ cpuPercent: 31, memoryPercent: 42, diskPercent: 53, stale: false });
      for (const metric of ['cpuPercent', 'memoryPercent', 'diskPercent']) {
        expect(online.telemetry.metrics[metric]).toEqual({ value: full[metric as keyof typeof full], sampledAt: full.sampledAt, ageMs: expect.any(Number), stale: false });
      }
      // and so does the live feed's push for the partial sample
      const pushed = await live.waitFor(
        (message) => message.type === 'RobotTelemetry' && message.robotId === ROBOT && message.at === partial.sampledAt,
        'the partial sample on the live feed',
      );
      expect(pushed.data).toMatchObject({ cpuPercent: 31, memoryPercent: 42, diskPercent: 53, metrics: { diskPercent: { sampledAt: full.sampledAt } } });
    } finally {
      await client.endAsync();
    }

    // Offline: the last values stay, marked stale
    await expect.poll(async () => (await robot())?.status, { message: 'the robot offline in the API' }).toBe('offline');
    const offline = await robot();
    expect(offline.telemetry).toMatchObject({ cpuPercent: 31, memoryPercent: 42, diskPercent: 53, stale: true });
    expect(offline.telemetry.metrics.diskPercent).toMatchObject({ value: 53, sampledAt: full.sampledAt, stale: true });
  });
});
