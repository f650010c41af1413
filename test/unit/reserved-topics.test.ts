import { describe, expect, it } from 'vitest';
import { provisioningTopics } from '../../schemas/provisioning.js';
import { type ReservedTopicService, ReservedTopics } from '../../local/iot-broker/reserved-topics.js';

const { createCertificateFromCsr: csr, registerThing } = provisioningTopics('heartbeat-claim');
const certificate = { certificateId: 'a'.repeat(64), certificatePem: '-----BEGIN CERTIFICATE-----\n…' };
const request = (topic: string, payload: unknown = {}) => ({ clientId: 'claim-LK0001', certificate, topic, payload: Buffer.from(JSON.stringify(payload)) });

function service(name: string, exchange = csr, handle: ReservedTopicService['handle'] = async () => undefined): ReservedTopicService {
  return { name, exchange, handle };
}

/** Collects the replies a dispatch sends to the requesting connection. */
function replies(): { sent: { topic: string; body: Record<string, unknown> }[]; deliver: (topic: string, body: Record<string, unknown>) => Promise<void> } {
  const sent: { topic: string; body: Record<string, unknown> }[] = [];
  return { sent, deliver: async (topic, body) => void sent.push({ topic, body }) };
}

describe('reserved topics', () => {
  it('routes a publish on a service request topic to that service', () => {
    const create = service('CreateCertificateFromCsr');
    const register = service('RegisterThing', registerThing);
    const registry = new ReservedTopics([create, register]);
    expect(registry.resolve(csr.request)).toEqual({ kind: 'service', service: create });
    expect(registry.resolve(registerThing.request)).toEqual({ kind: 'service', service: register });
  });

  it('refuses reserved topics nobody answers, as IoT Core severs the connection', () => {
    const registry = new ReservedTopics();
    expect(registry.resolve(csr.request)).toMatchObject({ kind: 'refused', problem: expect.stringContaining(csr.request) });
    expect(registry.resolve('$aws/certificates/create/json')).toMatchObject({ kind: 'refused' });
    expect(registry.resolve('$aws/things/lekiwi-LK0001/shadow/update')).toMatchObject({ kind: 'refused' });
    expect(registry.resolve('$aws/events/presence/connected/lekiwi-LK0001')).toMatchObject({ kind: 'refused' });
    expect(registry.resolve('$SYS/broker/uptime')).toMatchObject({ kind: 'refused' });
  });

  it('lets through what the broker already serves, and ordinary topics', () => {
    const registry = new ReservedTopics();
    expect(registry.resolve('$aws/rules/heartbeat_telemetry/dt/heartbeat/lekiwi-LK0001/telemetry')).toEqual({ kind: 'passThrough', family: 'Basic Ingest' });
    expect(registry.resolve('$aws/things/lekiwi-LK0001/jobs/start-next')).toEqual({ kind: 'passThrough', family: 'IoT Jobs' });
    expect(registry.resolve('dt/heartbeat/lekiwi-LK0001/telemetry')).toEqual({ kind: 'notReserved' });
  });

  it('refuses two services on one request topic, and a service on an ordinary topic', () => {
    expect(() => new ReservedTopics([service('A'), service('B')])).toThrow(/A and B both answer \$aws\/certificates\/create-from-csr\/json/);
    expect(() => new ReservedTopics([service('C', { request: 'x/y', accepted: 'x/y/accepted', rejected: 'x/y/rejected' })])).toThrow(/not a reserved/);
  });

  it("hands the handler the client, its certificate and the payload, and sends its reply on the exchange's topic", async () => {
    const seen: unknown[] = [];
    const create = service('CreateCertificateFromCsr', csr, async (req, reply) => {
      seen.push(req);
      await reply.accepted({ certificateId: 'b'.repeat(64) });
    });
    const out = replies();
    await new ReservedTopics([create]).dispatch(create, request(csr.request, { certificateSigningRequest: 'x' }), out.deliver);
    expect(seen).toEqual([request(csr.request, { certificateSigningRequest: 'x' })]);
    expect(out.sent).toEqual([{ topic: csr.accepted, body: { certificateId: 'b'.repeat(64) } }]);
  });

  it('answers exactly once: a rejection as given, a second reply refused', async () => {
    let second: unknown;
    const create = service('CreateCertificateFromCsr', csr, async (_req, reply) => {
      await reply.rejected({ statusCode: 400, errorCode: 'InvalidCsr', errorMessage: 'bad' });
      second = await reply.accepted({}).catch((error: Error) => error.message);
    });
    const out = replies();
    await new ReservedTopics([create]).dispatch(create, request(csr.request), out.deliver);
    expect(out.sent).toEqual([{ topic: csr.rejected, body: { statusCode: 400, errorCode: 'InvalidCsr', errorMessage: 'bad' } }]);
    expect(second).toMatch(/already answered/);
  });

  it('answers a handler that throws, or forgets to reply, with a 500 rejection', async () => {
    const logs: unknown[] = [];
    const throwing = service('CreateCertificateFromCsr', csr, async () => {
      throw new Error('CA unavailable');
    });
    const silent = service('RegisterThing', registerThing);
    const registry = new ReservedTopics([throwing, silent], (entry) => logs.push(entry));
    const out = replies();
    await registry.dispatch(throwing, request(csr.request), out.deliver);
    await registry.dispatch(silent, request(registerThing.request), out.deliver);
    expect(out.sent).toEqual([
      { topic: csr.rejected, body: { statusCode: 500, errorCode: 'InternalFailure', errorMessage: expect.stringContaining('CA unavailable') } },
      { topic: registerThing.rejected, body: { statusCode: 500, errorCode: 'InternalFailure', errorMessage: expect.stringContaining('did not answer') } },
    ]);
    expect(logs).toHaveLength(2);
  });
});
