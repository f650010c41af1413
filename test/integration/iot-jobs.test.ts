import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, type IssuedCertificate } from '../../local/certificate-authority.js';
import { type IotBroker, type RuleRecord, startIotBroker } from '../../local/iot-broker.js';
import { type LocalIotJobs, openLocalIotJobs, startLocalIotJobs } from '../../local/iot-jobs/jobs-service.js';
import { ThingRegistry } from '../../local/thing-registry.js';

/**
 * The local IoT Jobs service end to end on the real local broker: robots (mqtt.js over mTLS with certificates of the
 * local CA, under the thing policy) use the Jobs MQTT API; the control plane is the JobsControl the orchestrator gets;
 * job events reach a topic rule through the broker; the jobs survive a restart of the service.
 */
const MINUTE_MS = 1_000;
const A = 'lekiwi-LK0101';
const B = 'lekiwi-LK0102';

let stateDir: string;
let ca: CertificateAuthority;
let broker: IotBroker;
let jobs: LocalIotJobs;
const certificates = new Map<string, IssuedCertificate>();
/** What the job events rule put (its Kinesis action, here a list). */
const ruleRecords: RuleRecord[] = [];
const clients: MqttClient[] = [];

function startJobs(open = startLocalIotJobs): Promise<LocalIotJobs> {
  return open({
    stateDir,
    minuteMs: MINUTE_MS,
    publish: (topic, payload) => broker.publish(topic, payload),
    thingExists: async (thingName) => (await ThingRegistry.in(stateDir).lookup(thingName)) !== undefined,
    log: () => undefined,
  });
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'iot-jobs-'));
  ca = await CertificateAuthority.create();
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  const registry = ThingRegistry.in(stateDir);
  for (const thingName of [A, B]) {
    const certificate = await ca.issueClientCertificate(thingName);
    certificates.set(thingName, certificate);
    await registry.attach(thingName, certificate.certificateId);
  }
  jobs = await startJobs();
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry,
    rules: [
      {
        rule: {
          name: 'job_events_test',
          topicFilter: '$aws/events/#',
          sql: "SELECT *, topic() AS topic FROM '$aws/events/#'",
          partitionKey: 'jobs-${topic(4)}',
          description: 'job and job execution events, as the deployment orchestrator rule will take them',
        },
        put: async (record) => void ruleRecords.push(record),
      },
    ],
    // Delegates to the current service, which the restart test replaces.
    reservedTopicPatternServices: [{ name: 'IoT Jobs', answers: (topic) => jobs.mqtt.answers(topic), handle: (request, reply) => jobs.mqtt.handle(request, reply) }],
    minKeepAliveSeconds: 1,
    log: () => undefined,
  });
});

afterEach(() => {
  for (const client of clients.splice(0)) client.end(true);
});

afterAll(async () => {
  await jobs?.stop();
  await broker?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

interface Heard {
  readonly topic: string;
  readonly body: Record<string, unknown>;
}

/** A robot connected as itself, subscribed to its own jobs topics, collecting what it hears. */
async function robot(thingName: string): Promise<{ client: MqttClient; heard: Heard[]; request: (path: string, body: Record<string, unknown>) => Promise<Heard> }> {
  const certificate = certificates.get(thingName)!;
  const client = mqtt.connect({
    protocol: 'mqtts',
    host: '127.0.0.1',
    port: broker.port,
    clientId: thingName,
    ca: ca.certificatePem,
    cert: certificate.certificatePem,
    key: certificate.privateKeyPem,
    servername: 'localhost',
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
  });
  clients.push(client);
  const heard: Heard[] = [];
  client.on('message', (topic, payload) => {
    try {
      heard.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> });
    } catch {
      heard.push({ topic, body: { notJson: payload.toString() } }); // its own bad request, echoed by its subscription
    }
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  const granted = await client.subscribeAsync(`$aws/things/${thingName}/jobs/#`, { qos: 1 });
  expect(granted.map((grant) => grant.qos)).toEqual([1]);
  let tokens = 0;
  /** Publishes a Jobs request with a fresh clientToken; resolves with the reply carrying it. */
  const request = async (path: string, body: Record<string, unknown>): Promise<Heard> => {
    const clientToken = `${thingName}-${++tokens}`;
    const topic = `$aws/things/${thingName}/jobs/${path}`;
    await client.publishAsync(topic, JSON.stringify({ ...body, clientToken }), { qos: 1 });
    // The robot's subscription to its jobs/# also brings back its own request: a reply is on accepted or rejected.
    const isReply = (message: Heard) => message.body.clientToken === clientToken && message.topic !== topic;
    await expect.poll(() => heard.some(isReply), { message: `the reply to ${path}` }).toBe(true);
    const replies = heard.filter(isReply);
    expect(replies).toHaveLength(1);
    expect([`${topic}/accepted`, `${topic}/rejected`]).toContain(replies[0]!.topic);
    return replies[0]!;
  };
  return { client, heard, request };
}

const notifyNext = (heard: readonly Heard[], thingName: string) => heard.filter((message) => message.topic === `$aws/things/${thingName}/jobs/notify-next`).map((message) => message.body);
const eventTopics = (jobId: string) => ruleRecords.map((record) => String(record.data.topic)).filter((topic) => topic.includes(`/${jobId}/`));

describe('local IoT Jobs over MQTT', () => {
  it('notify-next → start-next → update SUCCEEDED (a stale expectedVersion rejected), job events seen by a rule', async () => {
    const a = await robot(A);
    expect(await jobs.createJob({ jobId: 'deploy-ok', thingNames: [A], document: { release: 'v2', files: 3 } })).toEqual({ jobId: 'deploy-ok', created: true });
    expect(await jobs.createJob({ jobId: 'deploy-ok', thingNames: [A], document: {} })).toEqual({ jobId: 'deploy-ok', created: false });

    await expect.poll(() => notifyNext(a.heard, A).length, { message: 'notify-next' }).toBe(1);
    expect(notifyNext(a.heard, A)[0]).toEqual({
      timestamp: expect.any(Number),
      execution: expect.objectContaining({ jobId: 'deploy-ok', thingName: A, status: 'QUEUED', versionNumber: 1, jobDocument: { release: 'v2', files: 3 }, executionNumber: expect.any(Number) }),
    });

    const started = await a.request('start-next', { stepTimeoutInMinutes: 100, statusDetails: { step: 'download' } });
    expect(started.topic).toBe(`$aws/things/${A}/jobs/start-next/accepted`);
    expect(started.body.execution).toMatchObject({ jobId: 'deploy-ok', status: 'IN_PROGRESS', versionNumber: 2, statusDetails: { step: 'download' }, startedAt: expect.any(Number) });

    const stale = await a.request('deploy-ok/update', { status: 'SUCCEEDED', expectedVersion: 1 });
    expect(stale.topic).toBe(`$aws/things/${A}/jobs/deploy-ok/update/rejected`);
    expect(stale.body).toMatchObject({ code: 'VersionMismatch', executionState: { status: 'IN_PROGRESS', versionNumber: 2 }, timestamp: expect.any(Number) });

    const done = await a.request('deploy-ok/update', { status: 'SUCCEEDED', expectedVersion: 2, statusDetails: { version: 'v2' }, includeJobExecutionState: true });
    expect(done.topic).toBe(`$aws/things/${A}/jobs/deploy-ok/update/accepted`);
    expect(done.body.executionState).toEqual({ status: 'SUCCEEDED', statusDetails: { version: 'v2' }, versionNumber: 3 });

    // Nothing is pending any more: notify-next says so with a timestamp only.
    await expect.poll(() => notifyNext(a.heard, A).length).toBe(2);
    expect(notifyNext(a.heard, A)[1]).toEqual({ timestamp: expect.any(Number) });
    await expect.poll(() => eventTopics('deploy-ok')).toEqual(['$aws/events/jobExecution/deploy-ok/succeeded', '$aws/events/job/deploy-ok/completed']);
    const succeeded = ruleRecords.find((record) => record.data.topic === '$aws/events/jobExecution/deploy-ok/succeeded')!;
    expect(succeeded.data).toMatchObject({ eventType: 'JOB_EXECUTION', operation: 'succeeded', jobId: 'deploy-ok', thingArn: `arn:aws:iot:eu-west-1:000000000000:thing/${A}`, status: 'SUCCEEDED', statusDetails: { version: 'v2' } });
    expect(await jobs.describeJob('deploy-ok')).toMatchObject({ status: 'COMPLETED', processDetails: { numberOfSucceededThings: 1 } });
  });

  it('a FAILED report trips the abort criteria: the job is canceled (AUTO_CANCEL), the queued robot hears it and can no longer update', async () => {
    const a = await robot(A);
    const b = await robot(B);
    await jobs.createJob({
      jobId: 'deploy-bad',
      thingNames: [A, B],
      document: { release: 'v3' },
      abort: { criteriaList: [{ failureType: 'FAILED', action: 'CANCEL', thresholdPercentage: 50, minNumberOfExecutedThings: 1 }] },
    });
    await expect.poll(() => notifyNext(b.heard, B).length).toBe(1);
    const described = await b.request('$next/get', {});
    expect(described.body.execution).toMatchObject({ jobId: 'deploy-bad', status: 'QUEUED', jobDocument: { release: 'v3' } });

    await a.request('start-next', {});
    const failed = await a.request('deploy-bad/update', { status: 'FAILED', statusDetails: { reason: 'health check failed' } });
    expect(failed.topic).toBe(`$aws/things/${A}/jobs/deploy-bad/update/accepted`);

    await expect.poll(() => notifyNext(b.heard, B).at(-1)).toEqual({ timestamp: expect.any(Number) });
    const late = await b.request('deploy-bad/update', { status: 'IN_PROGRESS' });
    expect(late.topic).toBe(`$aws/things/${B}/jobs/deploy-bad/update/rejected`);
    expect(late.body).toMatchObject({ code: 'TerminalStateReached', executionState: { status: 'CANCELED' } });
    const nothing = await b.request('$next/get', {});
    expect(nothing.topic).toBe(`$aws/things/${B}/jobs/$next/get/accepted`);
    expect(nothing.body).not.toHaveProperty('execution');
    expect(await jobs.describeJob('deploy-bad')).toMatchObject({ status: 'CANCELED', reasonCode: 'AUTO_CANCEL', processDetails: { numberOfFailedThings: 1, numberOfCanceledThings: 1 } });
    await expect
      .poll(() => eventTopics('deploy-bad').sort())
      .toEqual(['$aws/events/job/deploy-bad/canceled', '$aws/events/jobExecution/deploy-bad/canceled', '$aws/events/jobExecution/deploy-bad/failed']);
    const canceledJob = ruleRecords.find((record) => record.data.topic === '$aws/events/job/deploy-bad/canceled')!;
    expect(canceledJob.data).toMatchObject({ eventType: 'JOB', operation: 'canceled', status: 'CANCELED', reasonCode: 'AUTO_CANCEL' });
  });

  it('answers get (pending lists) and rejects an unknown topic and bad JSON, echoing the clientToken', async () => {
    const a = await robot(A);
    await jobs.createJob({ jobId: 'deploy-list', thingNames: [A], document: { release: 'v4' } });
    const pending = await a.request('get', {});
    expect(pending.body).toMatchObject({ inProgressJobs: [], queuedJobs: [expect.objectContaining({ jobId: 'deploy-list', versionNumber: 1 })] });
    const unknown = await a.request('deploy-list/frobnicate', {});
    expect(unknown.body).toMatchObject({ code: 'InvalidTopic' });
    await a.client.publishAsync(`$aws/things/${A}/jobs/get`, 'not json', { qos: 1 });
    await expect.poll(() => a.heard.some((message) => message.body.code === 'InvalidJson')).toBe(true);
    await jobs.cancelJob('deploy-list', { reasonCode: 'TEST' });
  });

  it('rolls out at maximumPerMinute: the second robot sees nothing of the job until the next minute', async () => {
    const a = await robot(A);
    const b = await robot(B);
    await jobs.createJob({ jobId: 'deploy-slow', thingNames: [A, B], document: { release: 'v6' }, rollout: { maximumPerMinute: 1 } });
    await expect.poll(() => notifyNext(a.heard, A).length).toBe(1);
    const hidden = await b.request('deploy-slow/get', {});
    expect(hidden.body).toMatchObject({ code: 'ResourceNotFound' });
    expect(notifyNext(b.heard, B)).toEqual([]);
    await expect.poll(() => notifyNext(b.heard, B).length, { message: "B's notify-next in the next minute" }).toBe(1);
    expect(notifyNext(b.heard, B)[0]).toMatchObject({ execution: { jobId: 'deploy-slow', status: 'QUEUED' } });
    await jobs.cancelJob('deploy-slow');
  });

  it('refuses a job for a thing that does not exist, naming it', async () => {
    await expect(jobs.createJob({ jobId: 'deploy-ghost', thingNames: [A, 'lekiwi-LK9999'], document: {} })).rejects.toThrow(/lekiwi-LK9999 does not exist/);
    expect(await jobs.describeJob('deploy-ghost')).toBeNull();
  });

  it('keeps jobs and executions across a restart, with their timeouts re-armed', async () => {
    const a = await robot(A);
    await jobs.createJob({ jobId: 'deploy-restart', thingNames: [A, B], document: { release: 'v5' }, timeout: { inProgressTimeoutInMinutes: 2 } });
    const started = await a.request('start-next', {});
    expect(started.body.execution).toMatchObject({ jobId: 'deploy-restart', status: 'IN_PROGRESS' });
    await jobs.stop();
    expect((await stat(join(stateDir, 'iot-jobs.json'))).size).toBeGreaterThan(0);

    jobs = await startJobs(openLocalIotJobs);
    expect(await jobs.listExecutions('deploy-restart')).toEqual([
      expect.objectContaining({ thingName: A, status: 'IN_PROGRESS', versionNumber: 2 }),
      expect.objectContaining({ thingName: B, status: 'QUEUED' }),
    ]);
    await jobs.start();
    // The in-progress timeout armed before the restart fires in the new service.
    await expect.poll(async () => (await jobs.listExecutions('deploy-restart'))[0]!.status, { message: 'TIMED_OUT after the restart' }).toBe('TIMED_OUT');
    await expect.poll(() => eventTopics('deploy-restart')).toContain('$aws/events/jobExecution/deploy-restart/timed_out');
    // The device side answers from the restored state too.
    const b = await robot(B);
    const next = await b.request('$next/get', {});
    expect(next.body.execution).toMatchObject({ jobId: 'deploy-restart', status: 'QUEUED' });
    await jobs.cancelJob('deploy-restart');
  });
});
