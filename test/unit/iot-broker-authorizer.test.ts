import { describe, expect, it } from 'vitest';
import { IOT_MAX_PAYLOAD_BYTES } from '../../schemas/iot-limits.js';
import { claimPolicy, provisioningTopics } from '../../schemas/provisioning.js';
import { beyondIotLimits, decidePublish, decideSubscribe, mayReceive } from '../../local/iot-broker/thing-policy-authorizer.js';
import { MAX_KEEP_ALIVE_SECONDS, checkMinKeepAlive, grantedKeepAlive, identifyClient } from '../../local/iot-broker/authentication.js';

const ME = 'lekiwi-LK0001';
const OTHER = 'lekiwi-LK0002';
const payload = Buffer.from('{}');

describe('the broker authorizer: publish', () => {
  it('allows what the thing policy allows, within the limits', () => {
    expect(decidePublish(ME, { topic: `dt/heartbeat/${ME}/telemetry`, qos: 1, payload })).toEqual({ allowed: true });
    expect(decidePublish(ME, { topic: `$aws/rules/heartbeat_telemetry/dt/heartbeat/${ME}/telemetry`, qos: 0, payload })).toEqual({ allowed: true });
  });

  it("refuses another robot's topic as FORBIDDEN_ACCESS, naming the topic", () => {
    expect(decidePublish(ME, { topic: `dt/heartbeat/${OTHER}/telemetry`, qos: 1, payload })).toMatchObject({
      allowed: false,
      reason: 'FORBIDDEN_ACCESS',
      problem: `may not publish to dt/heartbeat/${OTHER}/telemetry`,
    });
  });

  it('refuses QoS 2 and payloads over 128 KB as CLIENT_ERROR, before the policy', () => {
    // Even on a topic the policy forbids, the limit is what IoT Core reports.
    expect(decidePublish(ME, { topic: `dt/heartbeat/${OTHER}/telemetry`, qos: 2, payload })).toMatchObject({ allowed: false, reason: 'CLIENT_ERROR' });
    const big = Buffer.alloc(IOT_MAX_PAYLOAD_BYTES + 1);
    expect(decidePublish(ME, { topic: `dt/heartbeat/${ME}/telemetry`, qos: 1, payload: big })).toMatchObject({
      allowed: false,
      reason: 'CLIENT_ERROR',
      problem: expect.stringContaining(`${IOT_MAX_PAYLOAD_BYTES + 1}-byte payload`),
    });
  });

  it('counts a string payload in UTF-8 bytes, and the limit itself is allowed', () => {
    expect(beyondIotLimits({ qos: 1, payload: Buffer.alloc(IOT_MAX_PAYLOAD_BYTES) })).toBeUndefined();
    expect(beyondIotLimits({ qos: 1, payload: 'é'.repeat(IOT_MAX_PAYLOAD_BYTES / 2) })).toBeUndefined();
    expect(beyondIotLimits({ qos: 1, payload: 'é'.repeat(IOT_MAX_PAYLOAD_BYTES / 2 + 1) })).toMatch(/byte payload/);
  });

  it('decides under another policy when given one (the claim policy)', () => {
    const topics = provisioningTopics('heartbeat-claim');
    const policy = claimPolicy('heartbeat-claim');
    expect(decidePublish('claim-LK0001', { topic: topics.createCertificateFromCsr.request, qos: 1, payload }, policy)).toEqual({ allowed: true });
    expect(decidePublish('claim-LK0001', { topic: `dt/heartbeat/${ME}/telemetry`, qos: 1, payload }, policy)).toMatchObject({ allowed: false, reason: 'FORBIDDEN_ACCESS' });
  });
});

describe('the broker authorizer: subscribe and receive', () => {
  it('grants its own commands, refuses only the filter for anything else, disconnects on QoS 2', () => {
    expect(decideSubscribe(ME, { topic: `cmd/heartbeat/${ME}/#`, qos: 1 })).toEqual({ kind: 'grant' });
    expect(decideSubscribe(ME, { topic: `cmd/heartbeat/+/report-now`, qos: 1 })).toMatchObject({ kind: 'refuseFilter' });
    expect(decideSubscribe(ME, { topic: `cmd/heartbeat/${ME}/#`, qos: 2 })).toMatchObject({ kind: 'disconnect', reason: 'CLIENT_ERROR' });
  });

  it('delivers only with Receive, and never a Basic Ingest message', () => {
    expect(mayReceive(ME, `cmd/heartbeat/${ME}/report-now`)).toBe(true);
    expect(mayReceive(ME, `cmd/heartbeat/${OTHER}/report-now`)).toBe(false);
    expect(mayReceive(ME, `$aws/rules/heartbeat_telemetry/cmd/heartbeat/${ME}/x`)).toBe(false);
  });
});

describe('connect: keep-alive and certificate identity', () => {
  it('raises a short keep-alive to the minimum and gives no keep-alive (0) the maximum', () => {
    expect(grantedKeepAlive(5, 30)).toBe(30);
    expect(grantedKeepAlive(60, 30)).toBe(60);
    expect(grantedKeepAlive(0, 30)).toBe(MAX_KEEP_ALIVE_SECONDS);
    expect(grantedKeepAlive(65_535, 30)).toBe(MAX_KEEP_ALIVE_SECONDS);
    expect(() => checkMinKeepAlive(0)).toThrow(/minKeepAliveSeconds must be a whole number/);
    expect(() => checkMinKeepAlive(1.5)).toThrow(/got 1.5/);
  });

  it('refuses a missing certificate, a missing CN and a client id other than the CN', () => {
    expect(identifyClient(undefined, ME)).toEqual({ ok: false, why: 'no client certificate' });
    const raw = Buffer.from('not a certificate');
    expect(identifyClient({ raw, subject: {} as never }, ME)).toMatchObject({ ok: false, why: 'the certificate has no single CN', certificateId: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(identifyClient({ raw, subject: { CN: OTHER } as never }, ME)).toMatchObject({ ok: false, why: `the client id is not the certificate's CN "${OTHER}"` });
  });
});
