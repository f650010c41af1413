import { describe, expect, it } from 'vitest';
import { IdempotencyKeyReused, idempotentRequest, replayAnswer } from '../../functions/app/idempotency.js';
import type { CommandReceipt } from '../../functions/app/ports.js';

const FAIL = 'POST /api/v2/robots/{id}/fail';
const RECOVER = 'POST /api/v2/robots/{id}/recover';
const base = { callerId: 'erin', key: 'key-00000001', route: FAIL, robotId: 'lekiwi-LK0001', body: { reason: 'overheats', by: { team: 'a', shift: 2 } } };

function receiptOf(request: ReturnType<typeof idempotentRequest>, answer: unknown): CommandReceipt {
  const { callerId, key, route, robotId, fingerprint } = request;
  return { callerId, key, route, robotId, fingerprint, answer, recordedAt: '2026-11-22T10:00:00.000Z' };
}

describe('idempotentRequest', () => {
  it('gives the same fingerprint to the same request whatever the order of its body keys', () => {
    const reordered = { ...base, body: { by: { shift: 2, team: 'a' }, reason: 'overheats' } };
    expect(idempotentRequest(reordered).fingerprint).toBe(idempotentRequest(base).fingerprint);
  });

  it.each([
    ['caller', { callerId: 'ada' }],
    ['route', { route: RECOVER }],
    ['robot', { robotId: 'lekiwi-LK0002' }],
    ['body', { body: { reason: 'overheats!' } }],
  ])('gives another fingerprint when the %s differs', (_what, change) => {
    expect(idempotentRequest({ ...base, ...change }).fingerprint).not.toBe(idempotentRequest(base).fingerprint);
  });
});

describe('replayAnswer', () => {
  const first = idempotentRequest(base);
  const receipt = receiptOf(first, { robot: { robotId: 'lekiwi-LK0001' }, appended: [{ seq: 3 }] });

  it('answers the recorded answer to the same request', () => {
    expect(replayAnswer(receipt, idempotentRequest({ ...base }))).toEqual(receipt.answer);
  });

  it('refuses the key on another route, naming the route it was used for', () => {
    const reuse = () => replayAnswer(receipt, idempotentRequest({ ...base, route: RECOVER, body: {} }));
    expect(reuse).toThrow(IdempotencyKeyReused);
    expect(reuse).toThrow(`Idempotency-Key key-00000001 was already used on this robot for ${FAIL}; send a new key`);
  });

  it('refuses the key with another body, saying so', () => {
    try {
      replayAnswer(receipt, idempotentRequest({ ...base, body: { reason: 'wheel' } }));
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(IdempotencyKeyReused);
      expect((error as IdempotencyKeyReused).differs).toEqual(['body']);
      expect((error as Error).message).toMatch(/with another body/);
    }
  });
});
