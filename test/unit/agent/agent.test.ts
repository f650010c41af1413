import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { droppedEventId, EventQueue, type EventQueueLimits } from '../../../agent/adapters/event-queue.js';
import type { Logger, LogFields } from '../../../agent/adapters/json-log.js';
import type { Link, LinkEvents, MessageHandler, QoS } from '../../../agent/adapters/mqtt-link.js';
import { COMMANDS, createAgent, type Agent, type AgentRuntimeConfig } from '../../../agent/agent.js';
import { telemetryPolicyConfig } from '../../../agent/core/telemetry-policy.js';
import { AgentEventBatch, type AgentEvent, type EventsAck, type TelemetrySample } from '../../../schemas/device.js';

const THING = 'lekiwi-LK0001';
const TELEMETRY_TOPIC = `$aws/rules/heartbeat_telemetry/dt/heartbeat/${THING}/telemetry`;
const EVENTS_TOPIC = `dt/heartbeat/${THING}/events`;
const REPORT_NOW = `cmd/heartbeat/${THING}/report-now`;
const REPLY_TOPIC = `cmd/heartbeat/${THING}/report-now/reply`;
const ACK_TOPIC = `cmd/heartbeat/${THING}/ack`;

interface Published {
  topic: string;
  payload: Record<string, unknown>;
  qos: QoS;
}

/** A link that does what the test says: connects, drops, fails publishes, delivers commands. */
class FakeLink extends EventEmitter<LinkEvents> implements Link {
  isConnected = false;
  started = false;
  stopped = false;
  private everConnected = false;
  readonly published: Published[] = [];
  readonly handlers = new Map<string, MessageHandler>();
  /** When set, every publish to a topic it matches fails (the broker never acknowledges). */
  failing: RegExp | undefined;
  /** With `failing`: the failure is the connection dropping (the publish rejects, and the link is down). */
  dropOnFailure = false;
  attempts = 0;

  async start() {
    this.started = true;
  }

  connect() {
    this.isConnected = true;
    const first = !this.everConnected;
    this.everConnected = true;
    this.emit(first ? 'connected' : 'resumed', { sessionPresent: false });
  }

  drop() {
    this.isConnected = false;
    this.emit('interrupted', new Error('wifi gone'));
  }

  async publish(topic: string, payload: string | Uint8Array, qos: QoS) {
    this.attempts += 1;
    if (!this.isConnected) throw new Error('not connected');
    if (this.failing?.test(topic)) {
      if (this.dropOnFailure) this.drop();
      throw new Error(this.dropOnFailure ? 'connection lost' : 'publish timed out');
    }
    this.published.push({ topic, payload: JSON.parse(String(payload)) as Record<string, unknown>, qos });
  }

  async subscribe(filter: string, handler: MessageHandler) {
    this.handlers.set(filter, handler);
  }

  /** What the broker would deliver on `topic` to a matching subscription. */
  deliver(topic: string, payload: string) {
    for (const [filter, handler] of this.handlers) {
      const pattern = new RegExp(`^${filter.replace(/[$.]/g, '\\$&').replace('+', '[^/]+')}$`);
      if (pattern.test(topic)) handler(topic, Buffer.from(payload));
    }
  }

  async stop() {
    this.stopped = true;
    this.isConnected = false;
  }

  on_(topic: string) {
    return this.published.filter((message) => message.topic === topic);
  }

  /** The messages on the events topic, each checked to be an AgentEventBatch with its outbox position. */
  batches(): AgentEventBatch[] {
    return this.on_(EVENTS_TOPIC).map((message) => {
      const batch = AgentEventBatch.parse(message.payload);
      if (batch.outbox === undefined) throw new Error('an events message without its outbox position');
      return batch;
    });
  }

  /** The events sent on the events topic, in order. */
  eventsSent(): AgentEvent[] {
    return this.batches().flatMap((batch) => batch.events);
  }

  /** Each message as [first position, last position]. */
  positionsSent(): [number, number][] {
    return this.batches().map((batch) => [batch.outbox?.first ?? 0, (batch.outbox?.first ?? 0) + batch.events.length - 1]);
  }
}

class RecordingLog implements Logger {
  readonly lines: { level: string; message: string; fields?: LogFields }[] = [];
  debug = (message: string, fields?: LogFields) => void this.lines.push({ level: 'debug', message, fields });
  info = (message: string, fields?: LogFields) => void this.lines.push({ level: 'info', message, fields });
  warn = (message: string, fields?: LogFields) => void this.lines.push({ level: 'warn', message, fields });
  error = (message: string, fields?: LogFields) => void this.lines.push({ level: 'error', message, fields });
  child = () => this;
  messages(level: string) {
    return this.lines.filter((line) => line.level === level).map((line) => line.message);
  }
}

/** The Pi's readings; tests move them between samples. */
const idle = {
  cpuPercent: 20,
  memoryPercent: 40,
  diskPercent: 50,
  cpuTemperatureC: 55,
  load1: 0.8,
  uptimeSeconds: 3_600,
  agentVersion: '0.1.0',
} satisfies Omit<TelemetrySample, 'sampledAt'>;

const policy = telemetryPolicyConfig({ minIntervalMs: 5_000, maxIntervalMs: 60_000 });

function runtimeConfig(stateDir: string, overrides: Partial<AgentRuntimeConfig> = {}): AgentRuntimeConfig {
  return { thingName: THING, basicIngest: true, stateDir, telemetry: { sampleIntervalMs: 1_000, policy }, ...overrides };
}

function event(n: number): AgentEvent {
  return {
    eventId: `event-0000000${n}`,
    occurredAt: new Date(Date.now()).toISOString(),
    type: 'TeleoperationStopped',
    data: { reason: `session ${n} over` },
  };
}

/** Waits (in real time) for something the real on-disk queue does; fake timers do not move file I/O. */
let stateDir: string;
let link: FakeLink;
let log: RecordingLog;
let reading: Omit<TelemetrySample, 'sampledAt'>;
let readFailure: Error | undefined;
let agent: Agent | undefined;
let queue: EventQueue | undefined;

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'heartbeat-agent-'));
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date('2026-11-22T08:00:00.000Z') });
  link = new FakeLink();
  log = new RecordingLog();
  reading = { ...idle };
  readFailure = undefined;
});

afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  queue = undefined;
  vi.useRealTimers();
  await rm(stateDir, { recursive: true, force: true });
});

async function startAgent(overrides: Partial<AgentRuntimeConfig> = {}, limits: EventQueueLimits = {}): Promise<Agent> {
  queue = new EventQueue({ directory: join(stateDir, 'queue'), log: () => {}, ...limits });
  agent = createAgent({
    random: () => 0.5,
    config: runtimeConfig(stateDir, overrides),
    link,
    telemetry: {
      read: async () => {
        if (readFailure) throw readFailure;
        return { sampledAt: new Date(Date.now()).toISOString(), ...reading };
      },
    },
    queue,
    log,
  });
  await agent.start();
  return agent;
}

/** Moves the fake clock and runs every timer and promise callback due meanwhile. */
const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

describe('agent runtime: telemetry', () => {
  it('sends the first sample at once when the link comes up, QoS 0 through Basic Ingest', async () => {
    await startAgent();
    expect(link.started).toBe(true);
    link.connect();
    await advance(0);
    const sent = link.on_(TELEMETRY_TOPIC);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toEqual({ topic: TELEMETRY_TOPIC, qos: 0, payload: { sampledAt: '2026-11-22T08:00:00.000Z', ...idle } });
  });

  it('uses the plain telemetry topic when Basic Ingest is off', async () => {
    await startAgent({ basicIngest: false });
    link.connect();
    await advance(0);
    expect(link.published.map((message) => message.topic)).toEqual([`dt/heartbeat/${THING}/telemetry`]);
  });

  it('holds a change past its deadband until the minimum interval, then sends it', async () => {
    await startAgent();
    link.connect();
    await advance(0);
    reading = { ...idle, cpuPercent: 90 };
    await advance(4_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(1);
    await advance(1_000);
    const sent = link.on_(TELEMETRY_TOPIC);
    expect(sent).toHaveLength(2);
    expect(sent[1]?.payload).toMatchObject({ cpuPercent: 90, sampledAt: '2026-11-22T08:00:05.000Z' });
  });

  it('does not send a change inside the deadband, and sends one past it', async () => {
    await startAgent();
    link.connect();
    await advance(0);
    reading = { ...idle, cpuPercent: 24, load1: 1.2 };
    await advance(10_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(1);
    reading = { ...idle, cpuTemperatureC: 57 };
    await advance(1_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(2);
    expect(link.on_(TELEMETRY_TOPIC)[1]?.payload.cpuTemperatureC).toBe(57);
  });

  it('sends an unchanged reading as a heartbeat at the maximum interval, and not before', async () => {
    await startAgent();
    link.connect();
    await advance(0);
    await advance(59_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(1);
    await advance(1_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(2);
    expect(link.on_(TELEMETRY_TOPIC)[1]?.payload.sampledAt).toBe('2026-11-22T08:01:00.000Z');
    await advance(60_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(3);
  });

  it('publishes nothing while offline and sends a fresh sample as soon as the link is back', async () => {
    await startAgent();
    link.connect();
    await advance(0);
    link.drop();
    reading = { ...idle, cpuPercent: 95 };
    const attemptsBefore = link.attempts;
    await advance(180_000);
    // Not even tried: telemetry is a latest-value signal, nothing is queued or retried while the link is down.
    expect(link.attempts).toBe(attemptsBefore);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(1);
    link.connect();
    await advance(0);
    const sent = link.on_(TELEMETRY_TOPIC);
    expect(sent).toHaveLength(2);
    expect(sent[1]?.payload).toMatchObject({ cpuPercent: 95, sampledAt: '2026-11-22T08:03:00.000Z' });
  });

  it('skips a sample whose read fails and carries on sampling', async () => {
    await startAgent();
    link.connect();
    await advance(0);
    readFailure = new Error('sensor gone');
    reading = { ...idle, cpuPercent: 90 };
    await advance(5_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(1);
    expect(log.messages('warn')).toContain('telemetry read failed; skipped this sample');
    readFailure = undefined;
    await advance(1_000);
    expect(link.on_(TELEMETRY_TOPIC)).toHaveLength(2);
  });
});

describe('agent runtime: commands', () => {
  it('answers report-now at once, inside the minimum interval, with a reply carrying the requestId', async () => {
    await startAgent();
    link.connect();
    await advance(2_000);
    expect(link.handlers.has(`cmd/heartbeat/${THING}/+`)).toBe(true);
    link.deliver(REPORT_NOW, JSON.stringify({ requestId: 'req-42' }));
    await advance(0);
    const telemetry = link.on_(TELEMETRY_TOPIC);
    expect(telemetry).toHaveLength(2);
    expect(telemetry[1]?.payload.sampledAt).toBe('2026-11-22T08:00:02.000Z');
    // The answering sample names the request (the live feed carries it to the dashboard); the others do not.
    expect(telemetry[1]?.payload.requestId).toBe('req-42');
    expect(telemetry[0]?.payload).not.toHaveProperty('requestId');
    expect(link.on_(REPLY_TOPIC)).toEqual([
      { topic: REPLY_TOPIC, qos: 1, payload: { requestId: 'req-42', sentAt: '2026-11-22T08:00:02.000Z' } },
    ]);
  });

  it('answers report-now without a payload too', async () => {
    await startAgent();
    link.connect();
    await advance(0);
    link.deliver(REPORT_NOW, '');
    await advance(0);
    expect(link.on_(REPLY_TOPIC)).toEqual([{ topic: REPLY_TOPIC, qos: 1, payload: { sentAt: '2026-11-22T08:00:00.000Z' } }]);
  });

  it('logs and ignores malformed and unknown commands, and keeps answering good ones', async () => {
    await startAgent();
    link.connect();
    await advance(0);
    link.deliver(REPORT_NOW, '{"requestId": ');
    link.deliver(REPORT_NOW, JSON.stringify({ requestId: 42 }));
    link.deliver(REPORT_NOW, JSON.stringify(['not', 'an', 'object']));
    link.deliver(`cmd/heartbeat/${THING}/self-destruct`, '{}');
    await advance(0);
    expect(link.published).toHaveLength(1);
    expect(log.messages('warn')).toEqual([
      'malformed command ignored: payload is not JSON',
      'malformed command ignored',
      'malformed command ignored',
      'unknown command ignored',
    ]);
    expect(log.lines.find((line) => line.fields?.field === 'requestId')).toBeDefined();
    link.deliver(REPORT_NOW, JSON.stringify({ requestId: 'after' }));
    await advance(0);
    expect(link.on_(REPLY_TOPIC).map((message) => message.payload.requestId)).toEqual(['after']);
  });

  it('routes a command registered with onCommand while running, stops routing it once unregistered, and keeps its own', async () => {
    const running = await startAgent();
    link.connect();
    await advance(0);
    const seen: unknown[] = [];
    const unregister = running.onCommand('install', (body) => void seen.push(body));
    expect(() => running.onCommand(COMMANDS.eventsAck, () => undefined)).toThrow(/already has a handler/);
    link.deliver(`cmd/heartbeat/${THING}/install`, '{"release":"1.2.3"}');
    unregister();
    link.deliver(`cmd/heartbeat/${THING}/install`, '{"release":"1.2.4"}');
    link.deliver(REPORT_NOW, '{"requestId":"still-answered"}');
    await advance(0);
    expect(seen).toEqual([{ release: '1.2.3' }]);
    expect(log.messages('warn')).toEqual(['unknown command ignored']);
    expect(link.on_(REPLY_TOPIC).map((message) => message.payload.requestId)).toEqual(['still-answered']);
  });

  it('stop() lets a command handler registered with onCommand finish before it closes the queue', async () => {
    const running = await startAgent();
    link.connect();
    await advance(0);
    const order: string[] = [];
    const close = queue!.close.bind(queue);
    queue!.close = () => {
      order.push('queue closed');
      return close();
    };
    let finish: (() => void) | undefined;
    running.onCommand('install', () => new Promise<void>((resolve) => (finish = resolve)));
    link.deliver(`cmd/heartbeat/${THING}/install`, '{}');
    expect(finish).toBeDefined();
    const stopped = running.stop();
    await advance(100);
    order.push('handler done');
    finish?.();
    await stopped;
    expect(order).toEqual(['handler done', 'queue closed']);
    expect(link.stopped).toBe(true);
  });

  it('reportNow() sends a sample on demand and says when', async () => {
    const running = await startAgent();
    link.connect();
    await advance(1_000);
    await expect(running.reportNow()).resolves.toEqual({ sent: true, sentAt: '2026-11-22T08:00:01.000Z' });
    link.drop();
    await expect(running.reportNow()).resolves.toEqual({ sent: false });
  });
});

/** The cloud's answer on `cmd/heartbeat/<thing>/ack`, for this queue's outbox unless told otherwise. */
function ack(through: number, extra: Omit<EventsAck, 'outbox'> = {}, outboxId = queue?.outboxId ?? ''): void {
  link.deliver(ACK_TOPIC, JSON.stringify({ outbox: { id: outboxId, through }, ...extra }));
}

const eventIds = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => event(from + i).eventId);

describe('agent runtime: events', () => {
  it('keeps events reported offline on disk and sends them in order once connected, QoS 1, as one batch', async () => {
    const running = await startAgent();
    for (const n of [1, 2, 3]) await running.report(event(n));
    expect(link.on_(EVENTS_TOPIC)).toHaveLength(0);
    expect(queue?.stats().pending).toBe(3);
    link.connect();
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === 1, { message: 'the backlog to go out' }).toBe(true);
    const sent = link.on_(EVENTS_TOPIC);
    // The backlog went out as one batch, oldest first, with its place in the outbox
    expect(link.batches()[0]?.outbox).toEqual({ id: queue?.outboxId, after: 0, first: 1 });
    expect(link.eventsSent().map((sentEvent) => sentEvent.eventId)).toEqual(eventIds(1, 3));
    expect(sent.every((message) => message.qos === 1)).toBe(true);
  });

  it('sends a single event reported while connected straight away, still in the batch form', async () => {
    const running = await startAgent();
    link.connect();
    await running.report(event(7));
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === 1, { message: 'the event to go out' }).toBe(true);
    expect(link.on_(EVENTS_TOPIC)[0]?.payload).toEqual({
      outbox: { id: queue?.outboxId, after: 0, first: 1 },
      events: [event(7)],
    });
  });

  it('keeps events on disk after the PUBACK, until the cloud acknowledges them', async () => {
    // Given three events the broker acknowledged (the fake link resolves every publish)
    const running = await startAgent();
    link.connect();
    for (const n of [1, 2, 3]) await running.report(event(n));
    await expect.poll(() => link.eventsSent().length === 3, { message: 'the events to go out' }).toBe(true);
    await advance(1_000);
    // Then they are still queued, across a restart too
    expect(queue?.stats().pending).toBe(3);
    await running.stop();
    agent = undefined;
    link = new FakeLink();
    await startAgent();
    expect(queue?.stats().pending).toBe(3);
  });

  it('removes exactly the events the cloud acknowledged, up to through', async () => {
    const running = await startAgent();
    link.connect();
    for (const n of [1, 2, 3, 4]) await running.report(event(n));
    await expect.poll(() => link.eventsSent().length === 4, { message: 'the events to go out' }).toBe(true);

    ack(2);
    await expect.poll(() => queue?.stats().pending === 2, { message: 'the ack to reach the disk' }).toBe(true);
    expect(queue?.stats().acknowledgedSeq).toBe(2);
    // A late or duplicated ack, and one for another outbox, change nothing
    ack(1);
    ack(2);
    ack(4, {}, 'an-outbox-from-before');
    await advance(0);
    await expect.poll(() => log.lines.some((line) => line.message === 'events ack for another outbox ignored'), { message: 'the foreign ack' }).toBe(true);
    expect(queue?.stats().pending).toBe(2);

    ack(4);
    await expect.poll(() => queue?.stats().pending === 0, { message: 'the last ack' }).toBe(true);
    // The next message says what the cloud has
    await running.report(event(5));
    await expect.poll(() => link.eventsSent().length === 5, { message: 'the new event' }).toBe(true);
    expect(link.batches().at(-1)?.outbox).toEqual({ id: queue?.outboxId, after: 4, first: 5 });
  });

  it('resends from the first pending event, in order, when the cloud asks', async () => {
    // Given four events in separate messages of which the cloud acknowledged the first
    const running = await startAgent();
    link.connect();
    for (const n of [1, 2, 3, 4]) {
      await running.report(event(n));
      await expect.poll(() => link.eventsSent().length === n, { message: `event ${n} to go out` }).toBe(true);
    }
    ack(1);
    await expect.poll(() => queue?.stats().pending === 3, { message: 'the first ack' }).toBe(true);
    const before = link.on_(EVENTS_TOPIC).length;

    // When the cloud says position 2 never arrived
    ack(1, { resend: true });

    // Then everything from position 2 goes out again, in order, in one batch
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === before + 1, { message: 'the resend' }).toBe(true);
    expect(link.positionsSent().at(-1)).toEqual([2, 4]);
    expect(link.batches().at(-1)?.events.map((sentEvent) => sentEvent.eventId)).toEqual(eventIds(2, 4));
    expect(log.messages('info')).toContain('the cloud asked for a resend: sending again in order');
  });

  it('sends everything unacknowledged again when no ack comes within the ack timeout, waiting longer each time', async () => {
    const running = await startAgent({ delivery: { ackTimeoutMs: 2_000 } });
    link.connect();
    await running.report(event(1));
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === 1, { message: 'the event to go out' }).toBe(true);

    await advance(1_999);
    expect(link.on_(EVENTS_TOPIC)).toHaveLength(1);
    await advance(1);
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === 2, { message: 'the first resend' }).toBe(true);
    expect(log.messages('warn')).toContain('no events ack from the cloud in time: sending again in order');
    // The second wait is longer: a 4 s ceiling, jitter in its upper half (random 0.5 → 3 s)
    await advance(2_999);
    expect(link.on_(EVENTS_TOPIC)).toHaveLength(2);
    await advance(1);
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === 3, { message: 'the second resend' }).toBe(true);
    expect(link.positionsSent()).toEqual([
      [1, 1],
      [1, 1],
      [1, 1],
    ]);

    // Once acknowledged, nothing more goes out
    ack(1);
    await expect.poll(() => queue?.stats().pending === 0, { message: 'the ack' }).toBe(true);
    await advance(120_000);
    expect(link.on_(EVENTS_TOPIC)).toHaveLength(3);
  });

  it('sends everything unacknowledged again on a reconnection', async () => {
    const running = await startAgent();
    link.connect();
    for (const n of [1, 2, 3]) await running.report(event(n));
    await expect.poll(() => link.eventsSent().length === 3, { message: 'the events to go out' }).toBe(true);
    ack(1);
    await expect.poll(() => queue?.stats().pending === 2, { message: 'the first ack' }).toBe(true);

    link.drop();
    link.connect();
    await expect.poll(() => link.eventsSent().length === 5, { message: 'the resend after the reconnection' }).toBe(true);
    expect(link.batches().at(-1)).toMatchObject({ outbox: { after: 1, first: 2 } });
    expect(link.eventsSent().slice(3).map((sentEvent) => sentEvent.eventId)).toEqual(eventIds(2, 3));
  });

  it('keeps an event whose publish fails on a live connection and sends it again at the ack deadline, without a reconnect', async () => {
    // The PUBACK timed out (a broker slow under load) but the connection is up: nothing will reconnect it.
    const running = await startAgent({ delivery: { ackTimeoutMs: 2_000 } });
    link.connect();
    link.failing = /\/events$/;
    await running.report(event(1));
    await expect.poll(() => log.messages('warn').includes('publishing events failed on a live connection; they go again at the ack deadline'), { message: 'the failure' }).toBe(true);
    expect(queue?.stats().pending).toBe(1);
    const eventPublishes = () => link.attempts - link.on_(TELEMETRY_TOPIC).length;
    // No hammering: nothing more until the deadline.
    await advance(1_999);
    expect(eventPublishes()).toBe(1);
    link.failing = undefined;
    await advance(1);
    await expect.poll(() => link.eventsSent().map((sentEvent) => sentEvent.eventId), { message: 'the resend at the deadline' }).toEqual(eventIds(1, 1));
    await running.report(event(2));
    await expect.poll(() => link.eventsSent().length, { message: 'the next event' }).toBe(2);
    expect(link.eventsSent().map((sentEvent) => sentEvent.eventId)).toEqual(eventIds(1, 2));
    expect(queue?.stats().pending).toBe(2);
  });

  it('keeps an event whose publish fails on a dropped link, stops until the next connection, then sends in order', async () => {
    const running = await startAgent();
    link.connect();
    link.failing = /\/events$/;
    link.dropOnFailure = true;
    await running.report(event(1));
    await expect.poll(() => log.messages('warn').includes('event delivery stopped until the next connection; events stay queued'), { message: 'the failure' }).toBe(true);
    expect(queue?.stats().pending).toBe(1);
    await running.report(event(2));
    await advance(60_000);
    expect(link.eventsSent()).toEqual([]);

    link.failing = undefined;
    link.connect();
    await expect.poll(() => link.eventsSent().length === 2, { message: 'the events after the reconnect' }).toBe(true);
    expect(link.eventsSent().map((sentEvent) => sentEvent.eventId)).toEqual(eventIds(1, 2));
  });

  it('keeps a window of at most maxInFlightBatches unacknowledged messages', async () => {
    // Given 250 queued events (three messages of at most 100) and a window of two
    const running = await startAgent({ delivery: { maxInFlightBatches: 2 } });
    for (let n = 1; n <= 250; n += 1) await running.report({ ...event(n), eventId: `event-${String(n).padStart(8, '0')}` });
    link.connect();
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === 2, { message: 'the first two messages' }).toBe(true);
    await advance(0);
    expect(link.positionsSent()).toEqual([
      [1, 100],
      [101, 200],
    ]);
    ack(100);
    await expect.poll(() => link.on_(EVENTS_TOPIC).length === 3, { message: 'the third message' }).toBe(true);
    expect(link.positionsSent()[2]).toEqual([201, 250]);
  });

  it('logs and ignores a malformed ack, and logs what the cloud refused for good (removed with the rest)', async () => {
    const running = await startAgent();
    link.connect();
    for (const n of [1, 2]) await running.report(event(n));
    await expect.poll(() => link.eventsSent().length === 2, { message: 'the events to go out' }).toBe(true);

    link.deliver(ACK_TOPIC, '{"outbox": ');
    link.deliver(ACK_TOPIC, JSON.stringify({ outbox: { id: queue?.outboxId, through: -1 } }));
    await advance(0);
    expect(log.messages('warn')).toEqual(['malformed command ignored: payload is not JSON', 'malformed events ack ignored']);
    expect(log.lines.find((line) => line.message === 'malformed events ack ignored')?.fields).toMatchObject({
      field: 'outbox.through',
    });
    expect(queue?.stats().pending).toBe(2);

    ack(2, { rejected: [{ eventId: event(2).eventId, position: 2, problems: [{ field: 'data', message: 'not allowed' }] }] });
    await expect.poll(() => queue?.stats().pending === 0, { message: 'the ack' }).toBe(true);
    expect(log.lines.find((line) => line.message === 'the cloud refused an event for good; it leaves the queue')).toMatchObject({
      level: 'warn',
      fields: { eventId: event(2).eventId, position: 2, problems: [{ field: 'data', message: 'not allowed' }] },
    });
  });

  it('refuses an invalid event, naming the field, and writes nothing', async () => {
    const running = await startAgent();
    await expect(running.report({ ...event(1), eventId: 'x' })).rejects.toThrow(/eventId/);
    expect(queue?.stats().pending).toBe(0);
  });
});

describe('agent runtime: events dropped while offline', () => {
  const droppedReports = () => link.eventsSent().filter((sentEvent) => sentEvent.type === 'EventsDropped');

  it('puts an EventsDropped with the count into the queue once the link is up, named after the outbox and the last drop', async () => {
    // Given a queue of two that had to drop the three oldest of five events while offline
    const running = await startAgent({}, { maxEvents: 2 });
    for (const n of [1, 2, 3, 4, 5]) await running.report(event(n));
    expect(queue?.stats()).toMatchObject({ pending: 2, droppedCount: 3 });

    // When the link comes up
    link.connect();
    link.connect();
    await expect.poll(() => droppedReports().length > 0, { message: 'the report' }).toBe(true);

    // Then the report went through the queue: the fourth event made room for it and is counted in it
    const outboxId = queue?.outboxId ?? '';
    expect(droppedReports()).toEqual([
      { eventId: droppedEventId(outboxId, 4), occurredAt: '2026-11-22T08:00:00.000Z', type: 'EventsDropped', data: { count: 4 } },
    ]);
    expect(droppedReports()[0]?.eventId).toBe(`dropped-${outboxId}-4`);
    expect(queue?.stats()).toMatchObject({ droppedCount: 0, pending: 2, acknowledgedSeq: 4 });
    expect(link.eventsSent().map((sentEvent) => sentEvent.eventId)).toEqual([event(5).eventId, `dropped-${outboxId}-4`]);
    expect(link.batches()[0]?.outbox).toEqual({ id: outboxId, after: 4, first: 5 });
    expect(log.lines.find((line) => line.message.startsWith('the event queue was full'))?.fields).toEqual({
      droppedCount: 4,
      eventId: `dropped-${outboxId}-4`,
    });

    // And it stays queued until the cloud acknowledges it like any other event
    await advance(1_000);
    expect(queue?.stats().pending).toBe(2);
    ack(6);
    await expect.poll(() => queue?.stats().pending === 0, { message: 'the ack' }).toBe(true);

    // And a later connection has nothing more to say
    link.drop();
    link.connect();
    await advance(0);
    expect(droppedReports()).toHaveLength(1);
  });

  it('keeps an unreported count across an agent restart and reports it on the next run', async () => {
    const first = await startAgent({}, { maxEvents: 3 });
    for (const n of [1, 2, 3, 4]) await first.report(event(n));
    await first.stop();
    agent = undefined;

    // (restarted with room to spare, so the report needs no room made for it)
    link = new FakeLink();
    await startAgent({}, { maxEvents: 10 });
    expect(queue?.stats().droppedCount).toBe(1);
    link.connect();
    await expect.poll(() => droppedReports().length === 1, { message: 'the report' }).toBe(true);
    expect(droppedReports()[0]).toMatchObject({ eventId: droppedEventId(queue?.outboxId ?? '', 1), data: { count: 1 } });
    expect(queue?.stats()).toMatchObject({ droppedCount: 0, pending: 4 });
    expect(link.eventsSent().map((sentEvent) => sentEvent.eventId)).toEqual([...eventIds(2, 4), droppedEventId(queue?.outboxId ?? '', 1)]);
  });

  it('says nothing when nothing was dropped', async () => {
    const running = await startAgent();
    await running.report(event(1));
    link.connect();
    await expect.poll(() => link.eventsSent().length === 1, { message: 'the event' }).toBe(true);
    await advance(0);
    expect(droppedReports()).toEqual([]);
  });
});

describe('agent runtime: stop', () => {
  it('stops sampling, ignores commands, closes the queue and stops the link; twice is fine', async () => {
    const running = await startAgent();
    link.connect();
    await advance(0);
    await running.stop();
    await running.stop();
    expect(link.stopped).toBe(true);
    const count = link.published.length;
    link.isConnected = true;
    link.deliver(REPORT_NOW, '{}');
    link.deliver(ACK_TOPIC, '{}');
    await advance(120_000);
    expect(link.published).toHaveLength(count);
    await expect(running.report(event(1))).rejects.toThrow(/stopp/);
  });

  it('a stop while the queue is still opening wins: the queue is closed once it is open, and nothing starts', async () => {
    queue = new EventQueue({ directory: join(stateDir, 'queue'), log: () => {} });
    let closes = 0;
    const close = queue.close.bind(queue);
    queue.close = () => {
      closes += 1;
      return close();
    };
    const racing = createAgent({ config: runtimeConfig(stateDir), link, telemetry: { read: async () => ({ sampledAt: new Date(Date.now()).toISOString(), ...reading }) }, queue, log });
    const starting = racing.start();
    await racing.stop();
    await starting;
    expect(closes).toBe(1);
    expect(link.started).toBe(false);
    expect(link.handlers.size).toBe(0);
    await expect(racing.report(event(1))).rejects.toThrow(/stopped/);
    expect(() => queue?.outboxId).toThrow(); // closed, not left open
  });

  it('lets a publish in flight finish before closing the queue, and keeps the event until the cloud has it', async () => {
    const running = await startAgent();
    link.connect();
    let release: (() => void) | undefined;
    const original = link.publish.bind(link);
    link.publish = (topic, payload, qos) =>
      topic === EVENTS_TOPIC
        ? new Promise<void>((resolve) => {
            release = () => void original(topic, payload, qos).then(resolve);
          })
        : original(topic, payload, qos);
    await running.report(event(1));
    await expect.poll(() => release !== undefined, { message: 'the publish to start' }).toBe(true);
    const stopped = running.stop();
    await advance(100);
    expect(link.stopped).toBe(false);
    release?.();
    await stopped;
    agent = undefined;
    // The PUBACK is not the cloud's acknowledgement: a restart sends it again.
    link = new FakeLink();
    await startAgent();
    expect(queue?.stats().pending).toBe(1);
    link.connect();
    await expect.poll(() => link.eventsSent().length === 1, { message: 'the event to go out again' }).toBe(true);
  });

  it('does not wait for a publish stuck on a dead link longer than the stop timeout', async () => {
    const running = await startAgent();
    link.connect();
    link.publish = (topic, payload, qos) =>
      topic === EVENTS_TOPIC ? new Promise<void>(() => undefined) : FakeLink.prototype.publish.call(link, topic, payload, qos);
    await running.report(event(1));
    await advance(0);
    const stopped = running.stop();
    await advance(5_000);
    await stopped;
    expect(link.stopped).toBe(true);
  });
});

describe('agent runtime: what is restated on every connection (issue 9, item 1)', () => {
  it('calls link-up listeners on the first connection and on every reconnection, at once if the link is already up', async () => {
    await startAgent();
    const early: string[] = [];
    agent!.onLinkUp(() => early.push('up'));
    expect(early).toEqual([]);
    link.connect();
    await advance(0);
    expect(early).toEqual(['up']);

    const late: string[] = [];
    const unsubscribe = agent!.onLinkUp(() => late.push('up'));
    expect(late).toEqual(['up']);
    link.drop();
    link.connect();
    await advance(0);
    expect(early).toEqual(['up', 'up']);
    expect(late).toEqual(['up', 'up']);
    unsubscribe();
    agent!.onLinkUp(() => {
      throw new Error('listener bug');
    });
    link.drop();
    link.connect();
    await advance(0);
    // A failing listener is logged and does not stop the others (or the agent).
    expect(early).toEqual(['up', 'up', 'up']);
    expect(late).toEqual(['up', 'up']);
    expect(log.messages('warn')).toContain('a link-up listener failed');
  });
});
