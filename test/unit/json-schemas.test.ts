import { readFile } from 'node:fs/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import { messageSchemas } from '../../schemas/json-schemas.js';

const schemas = messageSchemas();

function validator(name: string) {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  return ajv.compile(schemas[name] as object);
}

describe('exported JSON Schemas for device and live WebSocket messages', () => {
  it.each(Object.keys(schemas))('%s.schema.json is committed and up to date (run npm run schemas:export)', async (name) => {
    const committed = JSON.parse(await readFile(new URL(`../../schemas/json/${name}.schema.json`, import.meta.url), 'utf8'));
    expect(committed).toEqual(JSON.parse(JSON.stringify(schemas[name])));
  });

  it('accepts what the cloud accepts and rejects what it rejects, as another language’s validator would', () => {
    const telemetry = validator('telemetry-sample');
    expect(telemetry({ sampledAt: '2026-11-22T10:00:00.000Z', cpuPercent: 12.5, cpuTemperatureC: 61 })).toBe(true);
    expect(telemetry({ sampledAt: '2026-11-22T10:00:00.000Z', cpuPercent: 130 })).toBe(false);
    expect(telemetry({ cpuPercent: 10 })).toBe(false);
    expect(telemetry({ sampledAt: '2026-11-22T10:00:00Z', unknownField: 1 })).toBe(false);

    const agentEvent = validator('agent-event');
    expect(
      agentEvent({
        eventId: '3f7c1c1e-5d7e-4d3a-9a8e-0d6c2b1f4a11',
        occurredAt: '2026-11-22T10:00:00.000Z',
        type: 'TeleoperationStarted',
        data: { operatorAddress: '10.0.0.7', signals: ['actions'] },
      }),
    ).toBe(true);
    expect(agentEvent({ eventId: 'short', occurredAt: 'yesterday', type: 'TeleoperationStarted', data: {} })).toBe(false);
    const dropped = { eventId: '9b2d7f40-1c3e-4a5b-8c6d-7e8f9a0b1c2d', occurredAt: '2026-11-22T10:00:00Z', type: 'EventsDropped' };
    expect(agentEvent({ ...dropped, data: { count: 12 } })).toBe(true);
    expect(agentEvent({ ...dropped, data: { count: 0 } })).toBe(false);
    expect(agentEvent({ ...dropped, data: { count: 1.5 } })).toBe(false);
    expect(agentEvent({ ...dropped, data: {} })).toBe(false);
    expect(agentEvent({ eventId: 'abcdefgh-1', occurredAt: '2026-11-22T10:00:00Z', type: 'Unknown', data: {} })).toBe(false);
  });

  it('covers every message of the live WebSocket and the report-now command and its reply', () => {
    expect(Object.keys(schemas)).toEqual(
      expect.arrayContaining([
        'live-client-message',
        'live-message',
        'live-subscription-ack',
        'live-error',
        'report-now-command',
        'report-now-reply',
      ]),
    );
  });

  it('report-now: the command as the cloud sends it (extra fields allowed) and the agent’s reply', () => {
    const command = validator('report-now-command');
    expect(command({ requestId: '0b7c5e2a-41a4-4a63-9a55-3f2b1d7e9c10' })).toBe(true);
    expect(command({})).toBe(true);
    expect(command({ requestId: 'req-1', askedBy: 'erin' })).toBe(true);
    expect(command({ requestId: '' })).toBe(false);
    expect(command({ requestId: 42 })).toBe(false);

    const reply = validator('report-now-reply');
    expect(reply({ requestId: 'req-42', sentAt: '2026-11-22T08:00:02.000Z' })).toBe(true);
    expect(reply({ sentAt: '2026-11-22T08:00:02.000Z' })).toBe(true);
    expect(reply({ requestId: 'req-42' })).toBe(false);
    expect(reply({ requestId: 'req-42', sentAt: 'just now' })).toBe(false);
    expect(reply({ requestId: 'req-42', sentAt: '2026-11-22T08:00:02.000Z', extra: true })).toBe(false);
  });

  it('live feed: what a client may send, and what the cloud pushes and replies', () => {
    const client = validator('live-client-message');
    expect(client({ action: 'subscribe', robotIds: ['*'] })).toBe(true);
    expect(client({ action: 'unsubscribe', robotIds: ['lekiwi-LK0001', 'xle-XL0002'] })).toBe(true);
    expect(client({ action: 'subscribe', robotIds: [] })).toBe(false);
    expect(client({ action: 'subscribe', robotIds: ['not a robot'] })).toBe(false);
    expect(client({ action: 'watch', robotIds: ['*'] })).toBe(false);
    expect(client({ action: 'subscribe', robotIds: ['*'], extra: 1 })).toBe(false);

    const live = validator('live-message');
    const pushed = { type: 'RobotTelemetry', robotId: 'lekiwi-LK0001', seq: 7, at: '2026-11-22T08:00:02.000Z', data: { cpuPercent: 12 } };
    expect(live(pushed)).toBe(true);
    expect(live({ ...pushed, type: 'RobotMarkedFailed', data: { reason: 'wheel off', by: 'erin' } })).toBe(true);
    expect(live({ ...pushed, type: 'SomethingElse' })).toBe(false);
    expect(live({ ...pushed, seq: -1 })).toBe(false);

    const ack = validator('live-subscription-ack');
    expect(ack({ type: 'Subscribed', robotIds: ['*'] })).toBe(true);
    expect(ack({ type: 'Subscribed' })).toBe(false);

    const error = validator('live-error');
    expect(error({ type: 'Error', error: { code: 'INVALID_REQUEST', message: 'Invalid robotIds', details: [] } })).toBe(true);
    expect(error({ error: { code: 'INVALID_REQUEST', message: 'Invalid robotIds' } })).toBe(false);
  });
});
