import { describe, expect, it } from 'vitest';
import type { BrokerLogEntry } from '../../../local/iot-broker/contract.js';
import { type ReservedTopicPatternService, type ReservedTopicService, ReservedTopics } from '../../../local/iot-broker/reserved-topics.js';
import { startLocalIotJobs } from '../../../local/iot-jobs/jobs-service.js';

/**
 * The broker's seam for services answering a family of reserved topics (local/iot-broker/reserved-topics.ts), and the
 * local IoT Jobs service's claim on it (local/iot-jobs/jobs-service.ts), without a broker: requests are handed to the
 * service as the broker would, and its replies and publishes collected.
 */
const certificate = { certificateId: 'a'.repeat(64), certificatePem: '-----BEGIN CERTIFICATE-----\n…' };
const request = (clientId: string, topic: string, payload: unknown = {}) => ({
  clientId,
  certificate,
  topic,
  payload: Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)),
});

describe('reserved topics: pattern services', () => {
  const pattern: ReservedTopicPatternService = { name: 'IoT Jobs', answers: (topic) => /^\$aws\/things\/[^/]+\/jobs\/get$/.test(topic), handle: async () => undefined };

  it('routes the topics a pattern service answers to it; the rest of the Jobs family still passes through', () => {
    const registry = new ReservedTopics([], undefined, [pattern]);
    expect(registry.resolve('$aws/things/lekiwi-LK0001/jobs/get')).toEqual({ kind: 'patternService', service: pattern });
    expect(registry.resolve('$aws/things/lekiwi-LK0001/jobs/notify-next')).toEqual({ kind: 'passThrough', family: 'IoT Jobs' });
    expect(registry.resolve('$aws/things/lekiwi-LK0001/shadow/get')).toMatchObject({ kind: 'refused' });
  });

  it('puts an exact service before any pattern service', () => {
    const exact: ReservedTopicService = {
      name: 'Exact',
      exchange: { request: '$aws/things/lekiwi-LK0001/jobs/get', accepted: '$aws/things/lekiwi-LK0001/jobs/get/accepted', rejected: '$aws/things/lekiwi-LK0001/jobs/get/rejected' },
      handle: async () => undefined,
    };
    const registry = new ReservedTopics([exact], undefined, [pattern]);
    expect(registry.resolve('$aws/things/lekiwi-LK0001/jobs/get')).toEqual({ kind: 'service', service: exact });
  });

  it('logs a pattern service that throws, and does not reject', async () => {
    const logs: BrokerLogEntry[] = [];
    const failing: ReservedTopicPatternService = { ...pattern, handle: async () => Promise.reject(new Error('boom')) };
    const registry = new ReservedTopics([], (entry) => logs.push(entry), [failing]);
    await registry.dispatchPattern(failing, request('lekiwi-LK0001', '$aws/things/lekiwi-LK0001/jobs/get'), async () => undefined);
    expect(logs).toEqual([expect.objectContaining({ level: 'error', message: 'IoT Jobs failed: boom' })]);
  });
});

describe('local IoT Jobs as a pattern service', () => {
  it('answers only its own thing, to the requesting connection, and notifies through publish', async () => {
    const published: { topic: string; payload: unknown }[] = [];
    const jobs = await startLocalIotJobs({ publish: async (topic, payload) => void published.push({ topic, payload }), log: () => undefined });
    try {
      expect(jobs.mqtt.answers('$aws/things/lekiwi-LK0001/jobs/start-next')).toBe(true);
      expect(jobs.mqtt.answers('$aws/things/lekiwi-LK0001/jobs/notify')).toBe(false);
      await jobs.createJob({ jobId: 'job-1', thingNames: ['lekiwi-LK0001'], document: { release: 'r1' } });
      expect(published.map(({ topic }) => topic)).toEqual(['$aws/things/lekiwi-LK0001/jobs/notify', '$aws/things/lekiwi-LK0001/jobs/notify-next']);

      const replies: { topic: string; body: Record<string, unknown> }[] = [];
      const reply = async (topic: string, body: Record<string, unknown>) => void replies.push({ topic, body });
      await jobs.mqtt.handle(request('lekiwi-LK0002', '$aws/things/lekiwi-LK0001/jobs/start-next', { clientToken: 'x' }), reply);
      expect(replies).toEqual([{ topic: '$aws/things/lekiwi-LK0001/jobs/start-next/rejected', body: expect.objectContaining({ code: 'InvalidRequest', clientToken: 'x' }) }]);
      expect((await jobs.listExecutions('job-1'))[0]!.status).toBe('QUEUED');

      await jobs.mqtt.handle(request('lekiwi-LK0001', '$aws/things/lekiwi-LK0001/jobs/start-next', { clientToken: 'y' }), reply);
      expect(replies[1]).toEqual({
        topic: '$aws/things/lekiwi-LK0001/jobs/start-next/accepted',
        body: expect.objectContaining({ clientToken: 'y', execution: expect.objectContaining({ jobId: 'job-1', status: 'IN_PROGRESS' }) }),
      });
      // The next execution is the same one, now in progress: notify (the list changed) but no new notify-next.
      expect(published.map(({ topic }) => topic).slice(2)).toEqual(['$aws/things/lekiwi-LK0001/jobs/notify']);
    } finally {
      await jobs.stop();
    }
    await expect(jobs.describeJob('job-1')).rejects.toThrow(/stopped/);
  });
});
