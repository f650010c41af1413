import { mkdtemp, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../agent/adapters/json-log.js';
import { MqttLink } from '../../agent/adapters/mqtt-link.js';
import { Installer, type InstallerSettings } from '../../agent/installer.js';
import { JobsClient } from '../../agent/jobs-client.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { startIotBroker, type IotBroker } from '../../local/iot-broker.js';
import { openLocalIotJobs, type LocalIotJobs } from '../../local/iot-jobs/jobs-service.js';
import { provisionThing, ThingRegistry } from '../../local/thing-registry.js';
import type { InstallJobDocument } from '../../schemas/deployments.js';
import type { AgentEvent } from '../../schemas/device.js';
import { makeRelease, startObjectServer, type FixtureRelease, type ObjectServer } from '../support/release-fixture.js';

/**
 * The installer through the real local IoT Core (issue 12): the robot's MQTT link (aws-crt, mTLS) to the local broker,
 * whose IoT Jobs (local/iot-jobs) serves the Jobs MQTT API; jobs are created with the control plane the backend uses.
 * The objects come from a test HTTP store (the artifact-urls rule is tested with the artifact store).
 */

let stateDir: string;
let ca: CertificateAuthority;
let registry: ThingRegistry;
let broker: IotBroker;
let jobs: LocalIotJobs;
let objects: ObjectServer;
const stops: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'installer-jobs-'));
  ca = await CertificateAuthority.create();
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  registry = ThingRegistry.in(stateDir);
  objects = await startObjectServer();
  let publishThrough: IotBroker | undefined;
  jobs = await openLocalIotJobs({
    publish: async (topic, payload) => {
      if (!publishThrough) throw new Error('broker not up');
      await publishThrough.publish(topic, payload);
    },
  });
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry,
    reservedTopicPatternServices: [jobs.mqtt],
    rules: [],
    log: () => {},
  });
  publishThrough = broker;
});

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await broker?.stop();
  await (jobs as unknown as { stop?: () => Promise<void> | void })?.stop?.();
  await objects?.close();
  await rm(stateDir, { recursive: true, force: true });
});

function document(release: FixtureRelease): InstallJobDocument {
  return {
    operation: 'heartbeat.install',
    deploymentId: 'dep-01JD0000000000000000000002',
    kind: 'deploy',
    release: { version: release.manifest.version, manifestSha256: release.manifestSha256, fileCount: release.manifest.files.length, totalBytes: release.manifest.totalBytes },
    policy: { healthCheckTimeoutSeconds: 5, stepTimeoutMinutes: 10 },
  };
}

async function startRobot(name: string, settings: Partial<InstallerSettings> = {}) {
  const credentials = await provisionThing(stateDir, ca, name, { port: broker.port });
  const link = new MqttLink({
    endpoint: 'localhost',
    port: broker.port,
    clientId: name,
    certificateFile: credentials.certificateFile,
    privateKeyFile: credentials.privateKeyFile,
    caFile: credentials.caFile,
    keepAliveSeconds: 30,
    reconnect: { minSeconds: 1, maxSeconds: 2 },
  });
  const events: AgentEvent[] = [];
  const root = join(stateDir, 'robots', name);
  const installer = new Installer({
    settings: { root, restartCommands: [], restartTimeoutMs: 5_000, healthChecks: [], keepVersions: 3, ...settings },
    jobs: new JobsClient({ link, thingName: name, log: silentLog, answerTimeoutMs: 3_000 }),
    artifacts: objects,
    report: async (event) => void events.push(event),
    linkUp: () => link.isConnected,
    log: silentLog,
  });
  await installer.start();
  await link.start();
  stops.push(async () => {
    installer.stop();
    await link.stop();
  });
  return { root, events, installer, link };
}

async function executionOf(jobId: string, thingName: string) {
  return (await jobs.listExecutions(jobId)).find((e) => e.thingName === thingName);
}

describe('installer through the local IoT Jobs', () => {
  it('a job created while the robot runs: installed, job SUCCEEDED; a failing health check: switched back, FAILED', async () => {
    const robot = await startRobot('lekiwi-JOBS01', { healthChecks: [{ kind: 'command', command: 'test ! -f broken' }] });
    const v1 = makeRelease('1.0.0', { 'config.yaml': 'v1' });
    const v2 = makeRelease('2.0.0', { 'config.yaml': 'v2', broken: 'yes' });
    objects.add(v1);
    objects.add(v2);

    await jobs.createJob({ jobId: 'job-jobs-1', thingNames: ['lekiwi-JOBS01'], document: document(v1) as unknown as Record<string, unknown> });
    await expect.poll(async () => (await executionOf('job-jobs-1', 'lekiwi-JOBS01'))?.status, { timeout: 30_000 }).toBe('SUCCEEDED');
    expect(await readlink(join(robot.root, 'current'))).toBe('versions/1.0.0');

    await jobs.createJob({ jobId: 'job-jobs-2', thingNames: ['lekiwi-JOBS01'], document: document(v2) as unknown as Record<string, unknown> });
    await expect.poll(async () => (await executionOf('job-jobs-2', 'lekiwi-JOBS01'))?.status, { timeout: 30_000 }).toBe('FAILED');
    expect((await executionOf('job-jobs-2', 'lekiwi-JOBS01'))?.statusDetails).toMatchObject({ reason: 'HEALTH_CHECK_FAILED' });
    expect(await readlink(join(robot.root, 'current'))).toBe('versions/1.0.0');
    expect(robot.events.map((e) => e.type)).toEqual(['UpdateStarted', 'UpdateSucceeded', 'UpdateStarted', 'UpdateFailed']);
  }, 90_000);

  it('a job queued while the robot was offline is picked up when it connects', async () => {
    const v3 = makeRelease('3.0.0', { 'config.yaml': 'v3' });
    objects.add(v3);
    await jobs.createJob({ jobId: 'job-offline', thingNames: ['lekiwi-JOBS02'], document: document(v3) as unknown as Record<string, unknown> });
    const robot = await startRobot('lekiwi-JOBS02');
    await expect.poll(async () => (await executionOf('job-offline', 'lekiwi-JOBS02'))?.status, { timeout: 30_000 }).toBe('SUCCEEDED');
    expect(await readlink(join(robot.root, 'current'))).toBe('versions/3.0.0');
  }, 90_000);
});
