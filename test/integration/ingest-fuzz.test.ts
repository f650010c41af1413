import { ScanCommand } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it, vi, type MockInstance } from 'vitest';
import { DISCONNECT_REASONS, ROBOT_ID_PATTERN } from '../../schemas/index.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { startAckSink, viaChannel } from '../support/robot-ingest.js';
import { createTestEventLog } from '../support/dynamo.js';

/**
 * Thousands of malformed IoT payloads through the real ingest handlers, against DynamoDB Local: each one is rejected
 * with a warning that names the broken field and an `Invalid…` metric, no handler throws (IoT would have Lambda retry
 * a message that can never succeed), and nothing of it reaches the event log but the robot's count of refused messages
 * (DeviceMessagesRejected, when the payload names a robot). Valid payloads from the same kind of
 * arbitraries are recorded, so a handler that rejected everything would fail here too.
 */

type Handler = (payload: unknown) => Promise<KinesisStreamBatchResponse>;
type TestTable = Awaited<ReturnType<typeof createTestEventLog>>;

interface Loaded {
  readonly handlers: { readonly presence: Handler; readonly telemetry: Handler; readonly robotEvents: Handler };
  readonly warn: MockInstance;
  readonly info: MockInstance;
  readonly addMetric: MockInstance;
  readonly append: MockInstance;
}

/** Fresh handler modules (a cold start) on this table, with spies on the very logger, metrics and log they use. */
async function loadHandlers(table: TestTable): Promise<Loaded> {
  vi.resetModules();
  process.env.EVENT_LOG_TABLE = table.tableName;
  process.env.AWS_ENDPOINT_URL_DYNAMODB = inject('dynamoEndpoint');
  // Acknowledgements of refused events go to the robot; here, to a data plane stand-in that takes them.
  process.env.AWS_ENDPOINT_URL_IOT_DATA_PLANE = (ackSink ??= await startAckSink()).url;
  const [ingest, observability, eventLog] = await Promise.all([
    import('../../functions/handlers/robot-ingest.js'),
    import('../../functions/platform/observability.js'),
    import('../../functions/adapters/dynamo-event-log.js'),
  ]);
  return {
    handlers: {
      presence: viaChannel(ingest.handler, 'presence'),
      telemetry: viaChannel(ingest.handler, 'telemetry'),
      robotEvents: viaChannel(ingest.handler, 'events'),
    },
    warn: vi.spyOn(observability.logger, 'warn'),
    info: vi.spyOn(observability.logger, 'info'),
    addMetric: vi.spyOn(observability.metrics, 'addMetric'),
    append: vi.spyOn(eventLog.DynamoEventLog.prototype, 'append'),
  };
}

let ackSink: Awaited<ReturnType<typeof startAckSink>> | undefined;
afterAll(async () => {
  await ackSink?.stop();
});

async function itemCount(table: TestTable): Promise<number> {
  const scan = await table.client.send(new ScanCommand({ TableName: table.tableName, ConsistentRead: true }));
  return scan.Count ?? 0;
}

/** The types of the events in the table (markers and heads aside). */
async function eventTypes(table: TestTable): Promise<Set<string>> {
  const types = new Set<string>();
  let start: Record<string, unknown> | undefined;
  do {
    const scan = await table.client.send(
      new ScanCommand({ TableName: table.tableName, ConsistentRead: true, ExclusiveStartKey: start as never }),
    );
    for (const item of scan.Items ?? []) if (item.kind?.S === 'event') types.add(String(item.type?.S));
    start = scan.LastEvaluatedKey;
  } while (start);
  return types;
}

// ---- Field specs of the three payloads, for breaking one field at a time.

type Kind = 'string' | 'number' | 'boolean' | 'array' | 'object';
interface FieldSpec {
  readonly kind: Kind;
  readonly required?: boolean;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly min?: number;
  readonly max?: number;
  readonly int?: boolean;
  readonly datetime?: boolean;
  /** Only letters, digits and a few signs are allowed. */
  readonly charset?: boolean;
}
type Spec = Readonly<Record<string, FieldSpec>>;

const LIFECYCLE_COMMON: Spec = {
  clientId: { kind: 'string', required: true, minLength: 1, maxLength: 128 },
  timestamp: { kind: 'number', required: true, min: 0, max: 8.64e15, int: true },
  sessionIdentifier: { kind: 'string', required: true, minLength: 1, maxLength: 128 },
  principalIdentifier: { kind: 'string', required: true, minLength: 1, maxLength: 512 },
  versionNumber: { kind: 'number', required: true, min: 0, int: true },
};
const CONNECTED: Spec = { ...LIFECYCLE_COMMON, ipAddress: { kind: 'string', minLength: 1, maxLength: 64 } };
const DISCONNECTED: Spec = {
  ...LIFECYCLE_COMMON,
  clientInitiatedDisconnect: { kind: 'boolean', required: true },
  disconnectReason: { kind: 'string', minLength: 1, maxLength: 64 },
};

const percent: FieldSpec = { kind: 'number', min: 0, max: 100 };
const count: FieldSpec = { kind: 'number', min: 0, int: true };
const TELEMETRY: Spec = {
  sampledAt: { kind: 'string', required: true, datetime: true },
  cpuPercent: percent,
  memoryPercent: percent,
  memoryUsedBytes: count,
  diskPercent: percent,
  cpuTemperatureC: { kind: 'number', min: -60, max: 200 },
  uptimeSeconds: { kind: 'number', min: 0 },
  load1: { kind: 'number', min: 0 },
  networkRxBytes: count,
  networkTxBytes: count,
  agentVersion: { kind: 'string', maxLength: 64 },
  lerobotVersion: { kind: 'string', maxLength: 64 },
};

const AGENT_EVENT: Spec = {
  eventId: { kind: 'string', required: true, minLength: 8, maxLength: 128, charset: true },
  occurredAt: { kind: 'string', required: true, datetime: true },
  data: { kind: 'object', required: true },
};
const STARTED_DATA: Spec = {
  operatorAddress: { kind: 'string', minLength: 1, maxLength: 64 },
  signals: { kind: 'array' },
  score: { kind: 'number', min: 0, max: 1 },
};
const STOPPED_DATA: Spec = {
  durationMs: count,
  reason: { kind: 'string', required: true, minLength: 1, maxLength: 64 },
};

// ---- Arbitraries.

const finite = fc.double({ noNaN: true, noDefaultInfinity: true });
const shortJson = fc.jsonValue({ maxDepth: 1 });
const notA: Record<Kind, fc.Arbitrary<unknown>> = {
  string: fc.oneof(fc.integer(), finite, fc.boolean(), fc.constant(null), fc.array(shortJson, { maxLength: 3 }), fc.dictionary(fc.string(), shortJson, { maxKeys: 3 })),
  number: fc.oneof(fc.string({ maxLength: 20 }), fc.boolean(), fc.constant(null), fc.array(shortJson, { maxLength: 3 }), fc.dictionary(fc.string(), shortJson, { maxKeys: 3 })),
  boolean: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant(null), fc.array(shortJson, { maxLength: 3 }), fc.dictionary(fc.string(), shortJson, { maxKeys: 3 })),
  array: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.boolean(), fc.constant(null), fc.dictionary(fc.string(), shortJson, { maxKeys: 3 })),
  object: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.boolean(), fc.constant(null), fc.array(shortJson, { maxLength: 3 })),
};

/** Longer than allowed: a little, a lot, or the size of a whole IoT message. */
const tooLong = (maxLength: number) =>
  fc.oneof(
    { weight: 5, arbitrary: fc.integer({ min: maxLength + 1, max: maxLength + 3000 }) },
    { weight: 1, arbitrary: fc.constant(120_000) },
  ).map((length) => 'x'.repeat(length));

/** Never an ISO 8601 date-time: those always contain a `T`. */
const notADateTime = fc.oneof(
  fc.constantFrom('yesterday', '2026-11-22', '2026-11-22 10:00:00Z', '2026-13-01T00:00:00Z', '2026-02-30T00:00:00Z', '2026-11-22T25:00:00Z', '2026-11-22T10:00:00'),
  fc.string({ maxLength: 40 }).filter((text) => !text.includes('T')),
);

type Change = { readonly remove: true } | { readonly value: unknown };

function breakField(spec: FieldSpec): fc.Arbitrary<Change> {
  const options: fc.Arbitrary<Change>[] = [notA[spec.kind].map((value) => ({ value }))];
  if (spec.required) options.push(fc.constant({ remove: true as const }));
  if (spec.maxLength !== undefined) options.push(tooLong(spec.maxLength).map((value) => ({ value })));
  if (spec.minLength !== undefined) options.push(fc.string({ maxLength: spec.minLength - 1 }).map((value) => ({ value })));
  if (spec.min !== undefined) {
    const min = spec.min;
    options.push(finite.filter((value) => value < min).map((value) => ({ value })));
  }
  if (spec.max !== undefined) {
    const max = spec.max;
    options.push(finite.filter((value) => value > max).map((value) => ({ value })));
  }
  if (spec.kind === 'number') {
    // JSON allows what the log cannot store: magnitudes below 1e-130 (other than 0), or beyond 2^53.
    options.push(fc.constantFrom(5e-324, 1e-200, -1e-131).map((value) => ({ value })));
    if (spec.max === undefined) options.push(fc.constantFrom(2 ** 53, 1e20, 1e126, Number.MAX_VALUE).map((value) => ({ value })));
  }
  if (spec.int) options.push(fc.integer({ min: 0, max: 1_000_000 }).map((value) => ({ value: value + 0.5 })));
  if (spec.datetime) options.push(notADateTime.map((value) => ({ value })));
  if (spec.charset) options.push(fc.constantFrom('has spaces in it', 'slash/not/allowed', 'emoji-😀-id-1').map((value) => ({ value })));
  return fc.oneof(...options);
}

/** A payload that is malformed in one known way, and the field the rejection must name. */
interface Broken {
  readonly payload: unknown;
  readonly field: string;
}

function withChange(object: Record<string, unknown>, key: string, change: Change): Record<string, unknown> {
  const copy = { ...object };
  if ('remove' in change) delete copy[key];
  else copy[key] = change.value;
  return copy;
}

/** Keys an extra field must not take: the rule's `thingName`, the discriminators, and what JSON.parse never makes own. */
const RESERVED_KEYS = new Set(['thingName', 'type', 'eventType', '__proto__']);

/** One field of `valid` broken (the field chosen from `spec`), or one key too many. */
function brokenField(valid: Record<string, unknown>, spec: Spec, options: { strict: boolean }): fc.Arbitrary<Broken> {
  const broken = fc
    .constantFrom(...Object.keys(spec))
    .chain((key) => breakField(spec[key] as FieldSpec).map((change) => ({ payload: withChange(valid, key, change), field: key })));
  if (!options.strict) return broken;
  const extra = fc
    .tuple(
      fc.string({ minLength: 1, maxLength: 200 }).filter((key) => !(key in spec) && !RESERVED_KEYS.has(key)),
      shortJson,
    )
    .map(([key, value]) => ({ payload: { ...valid, [key]: value }, field: key }));
  return fc.oneof(broken, extra);
}

const notAnObject: fc.Arbitrary<Broken> = fc
  .oneof(
    fc.string({ maxLength: 100 }),
    fc.integer(),
    finite,
    fc.boolean(),
    fc.constant(null),
    fc.array(shortJson, { maxLength: 5 }),
  )
  .map((payload) => ({ payload, field: '(payload)' }));

const robotId = fc
  .tuple(fc.constantFrom('lekiwi', 'xle'), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,30}$/))
  .map(([model, name]) => `${model}-${name}`);
let serial = 0;
/** A robot id no other run used (shrinking replays runs), so each valid payload meets a robot never seen before. */
const fresh = (id: string) => `${id}-${(serial++).toString(36)}`;
const notARobotId = fc.oneof(
  fc.string({ maxLength: 200 }).filter((text) => !ROBOT_ID_PATTERN.test(text)),
  fc.constantFrom('dashboard-1', 'LEKIWI-LK0001', 'lekiwi-', 'lekiwi_LK0001', 'xle--7', 'robot-XL0007'),
  fc.constant(`lekiwi-${'L'.repeat(100_000)}`),
);
/** A robot's event time the cloud accepts: from EARLIEST_DEVICE_TIME to the cloud's clock (see deviceTimeProblem). */
const isoTime = fc
  .integer({ min: Date.parse('2020-01-01T00:00:00Z'), max: Date.now() })
  .map((ms) => new Date(ms).toISOString());

/** A robot's sample time the cloud accepts: not ahead of the cloud's clock (see MAX_CLOCK_AHEAD_MS). */
const sampleTime = fc
  .integer({ min: Date.parse('2020-01-01T00:00:00Z'), max: Date.now() })
  .map((ms) => new Date(ms).toISOString());

const connected = fc.record(
  {
    clientId: robotId,
    timestamp: fc.integer({ min: 0, max: 4_000_000_000_000 }),
    eventType: fc.constant('connected' as const),
    sessionIdentifier: fc.uuid(),
    principalIdentifier: fc.string({ minLength: 1, maxLength: 64 }),
    versionNumber: fc.nat(100_000),
    ipAddress: fc.ipV4(),
  },
  { requiredKeys: ['clientId', 'timestamp', 'eventType', 'sessionIdentifier', 'principalIdentifier', 'versionNumber'] },
);
const disconnected = fc.record(
  {
    clientId: robotId,
    timestamp: fc.integer({ min: 0, max: 4_000_000_000_000 }),
    eventType: fc.constant('disconnected' as const),
    sessionIdentifier: fc.uuid(),
    principalIdentifier: fc.string({ minLength: 1, maxLength: 64 }),
    versionNumber: fc.nat(100_000),
    clientInitiatedDisconnect: fc.boolean(),
    disconnectReason: fc.constantFrom(...DISCONNECT_REASONS),
  },
  { requiredKeys: ['clientId', 'timestamp', 'eventType', 'sessionIdentifier', 'principalIdentifier', 'versionNumber', 'clientInitiatedDisconnect'] },
);

/** Numbers a sample can carry and the log can store (DynamoDB: 0, or magnitudes from 1e-130); -0 comes back as 0. */
const bounded = (min: number, max: number) =>
  fc.double({ min, max, noNaN: true }).filter((value) => (value === 0 && !Object.is(value, -0)) || Math.abs(value) >= 1e-130);
const telemetrySample = fc.record(
  {
    sampledAt: sampleTime,
    cpuPercent: bounded(0, 100),
    memoryPercent: bounded(0, 100),
    memoryUsedBytes: fc.nat(),
    diskPercent: bounded(0, 100),
    cpuTemperatureC: bounded(-60, 200),
    uptimeSeconds: bounded(0, 1e9),
    load1: bounded(0, 64),
    networkRxBytes: fc.maxSafeNat(),
    networkTxBytes: fc.maxSafeNat(),
    agentVersion: fc.string({ maxLength: 64 }),
    lerobotVersion: fc.string({ maxLength: 64 }),
  },
  { requiredKeys: ['sampledAt'] },
);

const eventId = fc.uuid();
const teleoperationStarted = fc.record({
  eventId,
  occurredAt: isoTime,
  type: fc.constant('TeleoperationStarted' as const),
  data: fc.record(
    {
      operatorAddress: fc.ipV4(),
      signals: fc.array(fc.constantFrom('actions', 'observations', 'peer', 'host-process'), { maxLength: 4 }),
      score: bounded(0, 1),
    },
    { requiredKeys: [] },
  ),
});
const teleoperationStopped = fc.record({
  eventId,
  occurredAt: isoTime,
  type: fc.constant('TeleoperationStopped' as const),
  data: fc.record({ durationMs: fc.nat(), reason: fc.constantFrom('idle', 'operator-left', 'host-exited') }, { requiredKeys: ['reason'] }),
});

// ---- Malformed payloads per handler.

const malformedLifecycle: fc.Arbitrary<Broken> = fc.oneof(
  notAnObject,
  connected.chain((valid) => brokenField(valid, CONNECTED, { strict: false })),
  disconnected.chain((valid) => brokenField(valid, DISCONNECTED, { strict: false })),
  fc
    .tuple(fc.oneof(connected, disconnected), fc.oneof(fc.constant(undefined), fc.string({ maxLength: 30 }).filter((t) => t !== 'connected' && t !== 'disconnected')))
    .map(([valid, eventType]) => ({ payload: withChange(valid, 'eventType', eventType === undefined ? { remove: true } : { value: eventType }), field: 'eventType' })),
);

/** A robot's message with its thing name broken, or its body broken in one field. */
function malformedThingMessage(valid: fc.Arbitrary<Record<string, unknown>>, body: (valid: Record<string, unknown>) => fc.Arbitrary<Broken>) {
  const withThing = (payload: unknown, thingName: string) =>
    typeof payload === 'object' && payload !== null ? { ...payload, thingName } : payload;
  return fc.oneof(
    notAnObject,
    fc.tuple(valid, fc.oneof(notARobotId, notA.string)).map(([payload, thingName]) => ({ payload: { ...payload, thingName }, field: 'thingName' })),
    valid.map((payload) => ({ payload, field: 'thingName' })),
    fc.tuple(valid, robotId).chain(([payload, thingName]) =>
      body(payload).map((broken) => ({ payload: withThing(broken.payload, thingName), field: broken.field })),
    ),
  );
}

const malformedTelemetry = malformedThingMessage(telemetrySample, (valid) => brokenField(valid, TELEMETRY, { strict: true }));

const malformedRobotEvent = malformedThingMessage(fc.oneof(teleoperationStarted, teleoperationStopped), (valid) => {
  const dataSpec = valid.type === 'TeleoperationStarted' ? STARTED_DATA : STOPPED_DATA;
  const data = valid.data as Record<string, unknown>;
  return fc.oneof(
    brokenField(valid, AGENT_EVENT, { strict: true }),
    brokenField(data, dataSpec, { strict: true }).map((broken) => ({ payload: { ...valid, data: broken.payload }, field: `data.${broken.field}` })),
    fc
      .string({ maxLength: 30 })
      .filter((type) => type !== 'TeleoperationStarted' && type !== 'TeleoperationStopped' && type !== 'EventsDropped')
      .map((type) => ({ payload: { ...valid, type }, field: 'type' })),
  );
});

// ---- The properties.

const MALFORMED_RUNS = 2_000;
/** Each refused message of a robot also records its count (one DeviceMessagesRejected append): slower than the rest. */
const REJECTING_TIMEOUT_MS = 300_000;
const VALID_RUNS = 80;
/** The rejection log line keeps field names short: a client's odd key is not ours to log in full. */
const logged = (field: string) => field.slice(0, 128);
const claimed = (payload: unknown, key: string) => {
  const value = typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>)[key] : undefined;
  return typeof value === 'string' ? value.slice(0, 128) : null;
};

describe('malformed IoT payloads', () => {
  let table: TestTable;
  let loaded: Loaded;

  beforeAll(async () => {
    table = await createTestEventLog();
    loaded = await loadHandlers(table);
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await table.drop();
  });

  async function expectRejected(handler: Handler, broken: Broken, kind: string, idField: string) {
    loaded.warn.mockClear();
    loaded.addMetric.mockClear();
    loaded.append.mockClear();

    // Refused for good: never reported as a failure the mapping would retry.
    await expect(handler(broken.payload)).resolves.toEqual({ batchItemFailures: [] });

    expect(loaded.warn).toHaveBeenCalledTimes(1);
    const [message, details] = loaded.warn.mock.calls[0] as [string, { robotId: string | null; fields: string[] }];
    expect(message).toMatch(/^Rejected an invalid/);
    expect(details.fields).toContain(logged(broken.field));
    expect(details.robotId).toBe(claimed(broken.payload, idField));
    const isObject = typeof broken.payload === 'object' && broken.payload !== null && !Array.isArray(broken.payload);
    expect(loaded.addMetric).toHaveBeenCalledWith(isObject ? `Invalid${kind}` : 'InvalidChannelRecord', 'Count', 1);
    // Nothing of it is appended: at most the robot's count of refused messages.
    for (const [request] of loaded.append.mock.calls as [{ events: { type: string }[] }][]) {
      expect(request.events.map((event) => event.type)).toEqual(['DeviceMessagesRejected']);
    }
  }

  it('rejects malformed lifecycle events, naming the field', async () => {
    // Given/When: thousands of lifecycle payloads, each broken in one way; Then: each is rejected and counted
    await fc.assert(
      fc.asyncProperty(malformedLifecycle, (broken) => expectRejected(loaded.handlers.presence, broken, 'Lifecycle', 'clientId')),
      { numRuns: MALFORMED_RUNS },
    );
    // And nothing at all reached the event log table
    expect(await itemCount(table)).toBe(0);
  });

  it('ignores the lifecycle events of clients that are not robots, without an error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(connected, disconnected), notARobotId.filter((id) => id.length >= 1 && id.length <= 128), async (valid, clientId) => {
        // Given a well-formed lifecycle event of a client that is not a robot
        loaded.warn.mockClear();
        loaded.info.mockClear();
        loaded.addMetric.mockClear();
        loaded.append.mockClear();

        // When it arrives
        await expect(loaded.handlers.presence({ ...valid, clientId })).resolves.toEqual({ batchItemFailures: [] });

        // Then it is logged at info and counted as ignored, not as invalid, and nothing is appended
        expect(loaded.warn).not.toHaveBeenCalled();
        expect(loaded.info).toHaveBeenCalledWith(expect.stringMatching(/not a robot/), { clientId });
        expect(loaded.addMetric.mock.calls.filter((call) => call[0] === 'IgnoredClient' || String(call[0]).startsWith('Invalid'))).toEqual([
          ['IgnoredClient', 'Count', 1],
        ]);
        expect(loaded.append).not.toHaveBeenCalled();
      }),
      { numRuns: 300 },
    );
    expect(await itemCount(table)).toBe(0);
  });

  it('rejects malformed telemetry, naming the field and the thing', { timeout: REJECTING_TIMEOUT_MS }, async () => {
    await fc.assert(
      fc.asyncProperty(malformedTelemetry, (broken) => expectRejected(loaded.handlers.telemetry, broken, 'Telemetry', 'thingName')),
      { numRuns: MALFORMED_RUNS },
    );
    expect([...(await eventTypes(table))].filter((type) => type !== 'DeviceMessagesRejected')).toEqual([]);
  });

  it('rejects malformed robot events, naming the field and the thing', { timeout: REJECTING_TIMEOUT_MS }, async () => {
    await fc.assert(
      fc.asyncProperty(malformedRobotEvent, (broken) => expectRejected(loaded.handlers.robotEvents, broken, 'RobotEvent', 'thingName')),
      { numRuns: MALFORMED_RUNS },
    );
    expect([...(await eventTypes(table))].filter((type) => type !== 'DeviceMessagesRejected')).toEqual([]);
  });
});

describe('valid IoT payloads from the same arbitraries', () => {
  let table: TestTable;
  let loaded: Loaded;
  let log: DynamoEventLog;

  beforeAll(async () => {
    table = await createTestEventLog();
    loaded = await loadHandlers(table);
    log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await table.drop();
  });

  function clearSpies() {
    loaded.warn.mockClear();
    loaded.addMetric.mockClear();
  }
  /** Events appended (metrics with a value), refusals and ignored clients. */
  const metricNames = () =>
    loaded.addMetric.mock.calls
      .filter((call) => /^(Appended|Invalid|IgnoredClient)/.test(String(call[0])) && (call[2] as number) > 0)
      .map((call) => call[0]);

  it('records every valid lifecycle event of a new robot', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(connected, disconnected), async (generated) => {
        clearSpies();
        const presence = { ...generated, clientId: fresh(generated.clientId) };
        await loaded.handlers.presence(presence);
        expect(loaded.warn).not.toHaveBeenCalled();
        expect(metricNames()).toEqual(['Appended']);
        const [recorded] = (await log.readEvents(presence.clientId)).events;
        expect(recorded?.event.type).toBe(presence.eventType === 'connected' ? 'RobotConnected' : 'RobotDisconnected');
      }),
      { numRuns: VALID_RUNS },
    );
  });

  it('records every valid telemetry sample on the robot head', async () => {
    await fc.assert(
      fc.asyncProperty(telemetrySample, robotId, async (sample, generatedId) => {
        clearSpies();
        const robot = fresh(generatedId);
        await loaded.handlers.telemetry({ ...sample, thingName: robot });
        expect(loaded.warn).not.toHaveBeenCalled();
        expect(metricNames().every((name) => name === 'Appended')).toBe(true);
        expect((await log.readHead(robot))?.telemetry).toEqual(sample);
      }),
      { numRuns: VALID_RUNS },
    );
  });

  it('records every valid robot event that changes something', async () => {
    await fc.assert(
      fc.asyncProperty(teleoperationStarted, robotId, async (started, generatedId) => {
        clearSpies();
        const robot = fresh(generatedId);
        await loaded.handlers.robotEvents({ ...started, thingName: robot });
        expect(loaded.warn).not.toHaveBeenCalled();
        expect(metricNames()).toEqual(['Appended']);
        const [recorded] = (await log.readEvents(robot)).events;
        expect(recorded?.event).toMatchObject({ type: 'TeleoperationStarted', eventId: started.eventId, at: started.occurredAt });
      }),
      { numRuns: VALID_RUNS },
    );
    // A stop for a robot nobody drives is valid but changes nothing: accepted, not rejected.
    await fc.assert(
      fc.asyncProperty(teleoperationStopped, robotId, async (stopped, generatedId) => {
        clearSpies();
        const robot = fresh(generatedId);
        await loaded.handlers.robotEvents({ ...stopped, thingName: robot });
        expect(loaded.warn).not.toHaveBeenCalled();
        expect(metricNames()).toEqual([]);
        expect((await log.readEvents(robot)).events).toEqual([]);
      }),
      { numRuns: VALID_RUNS / 4 },
    );
  });
});
