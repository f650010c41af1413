import { readFile } from 'node:fs/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import { deviceMessageSchemas } from '../../schemas/json-schemas.js';

const schemas = deviceMessageSchemas();

function validator(name: string) {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  return ajv.compile(schemas[name] as object);
}

describe('exported JSON Schemas for device messages', () => {
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
});
