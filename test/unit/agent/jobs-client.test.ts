import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../../../agent/adapters/json-log.js';
import type { Link, LinkEvents, MessageHandler, QoS } from '../../../agent/adapters/mqtt-link.js';
import { JobsClient, type JobExecution } from '../../../agent/jobs-client.js';

const THING = 'lekiwi-LK0001';
const base = `$aws/things/${THING}/jobs`;

/** A link whose broker is the test: publishes are recorded and answered by `respond`, wildcard filters matched. */
class JobsLink extends EventEmitter<LinkEvents> implements Link {
  isConnected = true;
  readonly published: { topic: string; body: Record<string, unknown> }[] = [];
  readonly handlers = new Map<string, MessageHandler>();
  respond: (topic: string, body: Record<string, unknown>) => void = () => {};
  async start() {}
  async stop() {}
  async subscribe(filter: string, handler: MessageHandler) {
    this.handlers.set(filter, handler);
  }
  async publish(topic: string, payload: string | Uint8Array, _qos: QoS) {
    if (!this.isConnected) throw new Error('not connected');
    const body = JSON.parse(String(payload)) as Record<string, unknown>;
    this.published.push({ topic, body });
    queueMicrotask(() => this.respond(topic, body));
  }
  deliver(topic: string, body: unknown) {
    for (const [filter, handler] of this.handlers) {
      const f = filter.split('/');
      const t = topic.split('/');
      if (f.length === t.length && f.every((level, i) => level === '+' || level === t[i])) handler(topic, Buffer.from(JSON.stringify(body)));
    }
  }
}

const execution = (jobId: string, versionNumber: number, status = 'QUEUED') => ({
  jobId,
  thingName: THING,
  status,
  jobDocument: { operation: 'x' },
  versionNumber,
  executionNumber: 1,
  queuedAt: 1,
  lastUpdatedAt: 1,
});

let client: JobsClient | undefined;
afterEach(() => client?.stop());

function start(link: JobsLink, answerTimeoutMs = 200) {
  client = new JobsClient({ link, thingName: THING, log: silentLog, answerTimeoutMs, backoff: { baseMs: 5, capMs: 20 } });
  return client;
}

describe('JobsClient', () => {
  it('subscribes to notify-next and the answers it needs, and asks for $next at start and at every reconnection', async () => {
    const link = new JobsLink();
    const heard: (JobExecution | undefined)[] = [];
    link.respond = (topic, body) => {
      if (topic === `${base}/$next/get`) link.deliver(`${topic}/accepted`, { execution: execution('job-1', 1), clientToken: body['clientToken'], timestamp: 1 });
    };
    const jobs = start(link);
    jobs.onNext((e) => heard.push(e));
    await jobs.start();
    expect([...link.handlers.keys()]).toEqual(
      expect.arrayContaining([`${base}/notify-next`, `${base}/start-next/accepted`, `${base}/+/update/rejected`, `${base}/+/get/accepted`]),
    );
    await expect.poll(() => heard.length).toBe(1);
    expect(heard[0]).toMatchObject({ jobId: 'job-1', status: 'QUEUED', versionNumber: 1 });
    expect(link.published[0]).toMatchObject({ topic: `${base}/$next/get`, body: { includeJobDocument: true } });

    link.emit('resumed', { sessionPresent: false });
    await expect.poll(() => heard.length).toBe(2);
  });

  it('hears notify-next, including the empty one (no job any more)', async () => {
    const link = new JobsLink();
    link.isConnected = false;
    const heard: (JobExecution | undefined)[] = [];
    const jobs = start(link);
    jobs.onNext((e) => heard.push(e));
    await jobs.start();
    link.deliver(`${base}/notify-next`, { timestamp: 1, execution: execution('job-2', 3) });
    link.deliver(`${base}/notify-next`, { timestamp: 2 });
    link.deliver(`${base}/notify-next`, 'not an object');
    expect(heard.map((e) => e?.jobId)).toEqual(['job-2', undefined]);
    expect(jobs.versionOf('job-2')).toBe(3);
  });

  it('start-next sends stepTimeoutInMinutes and statusDetails with a clientToken and returns the execution', async () => {
    const link = new JobsLink();
    link.respond = (topic, body) => {
      if (topic === `${base}/start-next`) link.deliver(`${topic}/accepted`, { execution: execution('job-3', 2, 'IN_PROGRESS'), clientToken: body['clientToken'] });
    };
    const jobs = start(link);
    await jobs.start();
    const started = await jobs.startNext({ stepTimeoutInMinutes: 15, statusDetails: { step: 'starting' } });
    expect(started).toMatchObject({ jobId: 'job-3', status: 'IN_PROGRESS', versionNumber: 2 });
    const request = link.published.find((p) => p.topic === `${base}/start-next`)!;
    expect(request.body).toMatchObject({ stepTimeoutInMinutes: 15, statusDetails: { step: 'starting' } });
    expect(typeof request.body['clientToken']).toBe('string');
  });

  it('update sends expectedVersion, tracks the new versionNumber, and recovers from a VersionMismatch', async () => {
    const link = new JobsLink();
    let stored = 2;
    link.respond = (topic, body) => {
      const token = body['clientToken'];
      if (topic === `${base}/start-next`) link.deliver(`${topic}/accepted`, { execution: execution('job-4', stored, 'IN_PROGRESS'), clientToken: token });
      if (topic === `${base}/job-4/get`) link.deliver(`${topic}/accepted`, { execution: execution('job-4', stored, 'IN_PROGRESS'), clientToken: token });
      if (topic === `${base}/job-4/update`) {
        if (body['expectedVersion'] !== stored) {
          link.deliver(`${topic}/rejected`, { code: 'VersionMismatch', message: 'stale', clientToken: token, executionState: { status: 'IN_PROGRESS', versionNumber: stored } });
          return;
        }
        stored += 1;
        link.deliver(`${topic}/accepted`, { executionState: { status: body['status'], versionNumber: stored }, clientToken: token });
      }
    };
    const jobs = start(link);
    await jobs.start();
    await jobs.startNext({});
    expect(await jobs.update('job-4', { status: 'IN_PROGRESS', statusDetails: { step: 'fetching' } })).toBe('accepted');
    expect(jobs.versionOf('job-4')).toBe(3);
    // Someone else moved it on: the next update is refused once, then sent with the version the refusal named.
    stored = 7;
    expect(await jobs.update('job-4', { status: 'SUCCEEDED' })).toBe('accepted');
    const updates = link.published.filter((p) => p.topic === `${base}/job-4/update`).map((p) => p.body['expectedVersion']);
    expect(updates).toEqual([2, 3, 7]);
  });

  it('an update of a job already ended settles as terminal; an unknown job as not-found', async () => {
    const link = new JobsLink();
    link.respond = (topic, body) => {
      const token = body['clientToken'];
      if (topic === `${base}/job-5/get`) link.deliver(`${topic}/accepted`, { execution: execution('job-5', 4, 'IN_PROGRESS'), clientToken: token });
      if (topic === `${base}/job-5/update`) link.deliver(`${topic}/rejected`, { code: 'TerminalStateReached', message: 'canceled', clientToken: token });
      if (topic === `${base}/job-6/get`) link.deliver(`${topic}/rejected`, { code: 'ResourceNotFound', message: 'no', clientToken: token });
    };
    const jobs = start(link);
    await jobs.start();
    expect(await jobs.update('job-5', { status: 'FAILED', statusDetails: { reason: 'X' } })).toBe('terminal');
    expect(await jobs.update('job-6', { status: 'FAILED' })).toBe('not-found');
  });

  it('sends an unanswered request again until it is answered (a lost answer, a link that was down)', async () => {
    const link = new JobsLink();
    let updates = 0;
    link.respond = (topic, body) => {
      const token = body['clientToken'];
      if (topic === `${base}/job-7/get`) link.deliver(`${topic}/accepted`, { execution: execution('job-7', 1, 'IN_PROGRESS'), clientToken: token });
      if (topic === `${base}/job-7/update`) {
        updates += 1;
        if (updates === 1) return; // the first answer is lost
        link.deliver(`${topic}/accepted`, { executionState: { status: 'SUCCEEDED', versionNumber: 2 }, clientToken: token });
      }
    };
    const jobs = start(link, 50);
    await jobs.start();
    link.isConnected = false;
    setTimeout(() => (link.isConnected = true), 80);
    expect(await jobs.update('job-7', { status: 'SUCCEEDED' })).toBe('accepted');
    expect(updates).toBe(2);
  });
});
