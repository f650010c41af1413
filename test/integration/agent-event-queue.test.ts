import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  droppedEventId,
  EventQueue,
  InvalidAgentEventError,
  type EventQueueLimits,
} from '../../agent/adapters/event-queue.js';
import type { AgentEvent } from '../../schemas/device.js';

/** The agent's offline queue on a real file system: each test gets its own temporary directory. */

let directory: string;
let warnings: string[];
const opened: EventQueue[] = [];

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'agent-event-queue-'));
  warnings = [];
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((queue) => queue.close()));
  await rm(directory, { recursive: true, force: true });
});

function teleoperationStarted(n: number): AgentEvent {
  return {
    eventId: `evt-${String(n).padStart(5, '0')}`,
    occurredAt: '2026-11-22T20:00:00.000Z',
    type: 'TeleoperationStarted',
    data: { operatorAddress: '192.168.1.20', signals: ['actions'], score: 0.9 },
  };
}

function ids(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => teleoperationStarted(from + i).eventId);
}

/** Opening a queue object over the same directory is what an agent restart does. */
async function openQueue(limits: EventQueueLimits = {}, queueDirectory = directory): Promise<EventQueue> {
  const queue = new EventQueue({ directory: queueDirectory, ...limits, log: (message) => warnings.push(message) });
  await queue.open();
  opened.push(queue);
  return queue;
}

async function restart(queue: EventQueue, limits: EventQueueLimits = {}): Promise<EventQueue> {
  await queue.close();
  return openQueue(limits);
}

async function enqueueAll(queue: EventQueue, from: number, to: number): Promise<void> {
  for (let n = from; n <= to; n += 1) await queue.enqueue(teleoperationStarted(n));
}

/** A link that records what it delivered and can be told to fail on given attempts. */
function fakeLink(failOnAttempts: number[] = []) {
  const delivered: string[] = [];
  let attempts = 0;
  const send = async (event: AgentEvent): Promise<void> => {
    attempts += 1;
    if (failOnAttempts.includes(attempts)) throw new Error('link down');
    delivered.push(event.eventId);
  };
  return { delivered, send };
}

/**
 * What the runtime and the cloud do together, one event per message: send the oldest pending event, and once `send`
 * resolved, acknowledge its position as the cloud would. A failed send leaves it at the head. Resolves with how many
 * were delivered.
 */
async function deliverAll(queue: EventQueue, send: (event: AgentEvent) => Promise<void>): Promise<number> {
  let delivered = 0;
  for (;;) {
    const batch = queue.batchFrom(queue.snapshot().settledThrough + 1, { maxEvents: 1, maxBytes: 1 });
    if (batch === undefined) return delivered;
    await send(batch.events[0] as AgentEvent);
    await queue.acknowledge(batch.outbox.id, batch.last);
    delivered += 1;
  }
}

async function readState(queueDirectory = directory): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(queueDirectory, 'state.json'), 'utf8')) as Record<string, unknown>;
}

async function journalLines(): Promise<string[]> {
  const text = await readFile(join(directory, 'journal.jsonl'), 'utf8');
  return text.split('\n').filter((line) => line !== '');
}

describe('agent event queue', () => {
  it('refuses an invalid event with the field named and writes nothing', async () => {
    // Given an empty queue
    const queue = await openQueue();

    // When an event with a bad eventId is enqueued
    const attempt = queue.enqueue({ ...teleoperationStarted(1), eventId: 'bad id!' });

    // Then it is refused naming eventId, and the journal stays empty
    await expect(attempt).rejects.toBeInstanceOf(InvalidAgentEventError);
    await expect(attempt).rejects.toThrow(/eventId/);
    expect(queue.stats().pending).toBe(0);
    expect(await journalLines()).toEqual([]);
  });

  it('gives every event the next position of its outbox', async () => {
    const queue = await openQueue();
    const positions = [await queue.enqueue(teleoperationStarted(1)), await queue.enqueue(teleoperationStarted(2))];
    expect(positions).toEqual([1, 2]);
    expect(queue.snapshot()).toEqual({ outboxId: queue.outboxId, settledThrough: 0, sendableThrough: 2 });
  });

  it('delivers oldest first and keeps an event whose send failed at the head for the retry', async () => {
    // Given five queued events and a link that fails on its third attempt
    const queue = await openQueue();
    await enqueueAll(queue, 1, 5);
    const link = fakeLink([3]);

    // When the queue is delivered, fails, and is delivered again
    await expect(deliverAll(queue, link.send)).rejects.toThrow('link down');
    const afterFailure = queue.stats().pending;
    const deliveredByRetry = await deliverAll(queue, link.send);

    // Then the failed event stayed queued and every event arrived once, in order
    expect(afterFailure).toBe(3);
    expect(deliveredByRetry).toBe(3);
    expect(link.delivered).toEqual(ids(1, 5));
    expect(queue.stats().pending).toBe(0);
  });

  it('keeps pending events across an agent restart and does not resend acknowledged ones', async () => {
    // Given four events of which two were acknowledged before the link failed
    const first = await openQueue();
    await enqueueAll(first, 1, 4);
    const before = fakeLink([3]);
    await expect(deliverAll(first, before.send)).rejects.toThrow('link down');

    // When the agent restarts and delivers
    const second = await restart(first);
    const after = fakeLink();
    await deliverAll(second, after.send);

    // Then exactly the unacknowledged events go out, in order
    expect(before.delivered).toEqual(ids(1, 2));
    expect(after.delivered).toEqual(ids(3, 4));
  });

  it('drops the oldest events beyond maxEvents, counts them, and keeps the count across a restart', async () => {
    // Given a queue bounded to three events
    const queue = await openQueue({ maxEvents: 3 });

    // When five events are enqueued and the agent restarts
    await enqueueAll(queue, 1, 5);
    const restarted = await restart(queue, { maxEvents: 3 });
    const link = fakeLink();
    await deliverAll(restarted, link.send);

    // Then the two oldest were dropped, the newest three delivered, and the count survived
    expect(link.delivered).toEqual(ids(3, 5));
    expect(restarted.stats().droppedCount).toBe(2);
    expect(warnings.some((warning) => warning.includes('dropped'))).toBe(true);
  });

  it('bounds the queue by bytes as well', async () => {
    // Given a byte bound that holds two journal records of this size
    const probe = await openQueue();
    await probe.enqueue(teleoperationStarted(1));
    const recordBytes = probe.stats().pendingBytes;
    await probe.close();
    await rm(directory, { recursive: true });
    const queue = await openQueue({ maxBytes: recordBytes * 2 });

    // When four events are enqueued
    await enqueueAll(queue, 1, 4);

    // Then only the newest two remain and two drops are counted
    const link = fakeLink();
    await deliverAll(queue, link.send);
    expect(link.delivered).toEqual(ids(3, 4));
    expect(queue.stats().droppedCount).toBe(2);
  });

  it('settles dropped positions: a message after a drop promises the cloud nothing before it will come', async () => {
    const queue = await openQueue({ maxEvents: 2 });
    await enqueueAll(queue, 1, 5);
    expect(queue.stats()).toMatchObject({ acknowledgedSeq: 3, droppedCount: 3, pending: 2 });
    expect(queue.batchFrom(4)?.outbox).toEqual({ id: queue.outboxId, after: 3, first: 4 });
    expect(queue.batchFrom(3)).toBeUndefined();
  });

  it('turns the dropped count into an EventsDropped at the end of the queue, named after the highest dropped position', async () => {
    // Given two dropped events (positions 1 and 2)
    const queue = await openQueue({ maxEvents: 2 });
    await enqueueAll(queue, 1, 4);
    expect(queue.stats().droppedCount).toBe(2);

    // When the dropped count is reported (the queue is full: the oldest makes room and is counted too)
    const report = await queue.reportDropped('2026-11-22T21:00:00.000Z');

    // Then the report is the newest pending event, with the whole count and a deterministic id, and the count is clear
    expect(report).toEqual({
      eventId: droppedEventId(queue.outboxId, 3),
      occurredAt: '2026-11-22T21:00:00.000Z',
      type: 'EventsDropped',
      data: { count: 3 },
    });
    expect(report?.eventId).toMatch(/^dropped-[0-9a-f-]{36}-3$/);
    expect(queue.stats()).toMatchObject({ pending: 2, droppedCount: 0, acknowledgedSeq: 3 });
    const restarted = await restart(queue, { maxEvents: 2 });
    const link = fakeLink();
    await deliverAll(restarted, link.send);
    expect(link.delivered).toEqual([...ids(4, 4), droppedEventId(restarted.outboxId, 3)]);
    expect(restarted.stats().droppedCount).toBe(0);
    // Nothing more to say
    await expect(restarted.reportDropped('2026-11-22T21:01:00.000Z')).resolves.toBeUndefined();
  });

  it('does not report drops twice when a crash came between the report and the state write that clears the count', async () => {
    // Given a queue that dropped one event, and its state as it was before the report
    const queue = await openQueue({ maxEvents: 3 });
    await enqueueAll(queue, 1, 3);
    await queue.enqueue(teleoperationStarted(4));
    await queue.acknowledge(queue.outboxId, 2);
    const before = await readFile(join(directory, 'state.json'), 'utf8');
    expect(JSON.parse(before)).toMatchObject({ droppedCount: 1, droppedThrough: 1 });

    // When the report was appended but the crash lost the state write (its old state is put back)
    const report = await queue.reportDropped('2026-11-22T21:00:00.000Z');
    await queue.close();
    await writeFile(join(directory, 'state.json'), before);
    const restarted = await openQueue({ maxEvents: 3 });

    // Then the journal's report is recognised: the count is clear, and the report is pending once
    expect(restarted.stats().droppedCount).toBe(0);
    await expect(restarted.reportDropped('2026-11-22T21:05:00.000Z')).resolves.toBeUndefined();
    const link = fakeLink();
    await deliverAll(restarted, link.send);
    expect(link.delivered).toEqual([...ids(3, 4), report?.eventId]);
  });

  it('discards a torn last record and keeps every complete event', async () => {
    // Given three events and a crash mid-append that left half a record
    const queue = await openQueue();
    await enqueueAll(queue, 1, 3);
    await queue.close();
    await appendFile(join(directory, 'journal.jsonl'), '{"seq":4,"event":{"eventId":"evt-0');

    // When the agent restarts, enqueues one more, and restarts again
    const restarted = await openQueue();
    await restarted.enqueue(teleoperationStarted(4));
    const again = await restart(restarted);
    const link = fakeLink();
    await deliverAll(again, link.send);

    // Then the torn record was reported and dropped, and the new event was not glued onto it
    expect(warnings.filter((warning) => warning.includes('torn'))).toHaveLength(1);
    expect(link.delivered).toEqual(ids(1, 4));
    expect(again.stats().corruptRecords).toBe(0);
  });

  it('skips and counts a corrupt record in the middle of the journal', async () => {
    // Given a journal where a complete line between two events is garbage
    const queue = await openQueue();
    await queue.enqueue(teleoperationStarted(1));
    await queue.close();
    await appendFile(join(directory, 'journal.jsonl'), 'not json at all\n');
    const reopened = await openQueue();
    await reopened.enqueue(teleoperationStarted(2));

    // When the agent restarts and delivers
    const restarted = await restart(reopened);
    const link = fakeLink();
    await deliverAll(restarted, link.send);

    // Then both events arrive and the corrupt record is counted, not fatal
    expect(link.delivered).toEqual(ids(1, 2));
    expect(restarted.stats().corruptRecords).toBe(1);
  });

  it('never sends across the hole a corrupt record leaves, and settles the lost position once the cloud has the rest', async () => {
    // Given events at positions 1..4 of which position 2 became unreadable
    const queue = await openQueue();
    await enqueueAll(queue, 1, 4);
    await queue.close();
    const lines = await journalLines();
    lines[1] = 'garbage';
    await writeFile(join(directory, 'journal.jsonl'), `${lines.join('\n')}\n`);
    const restarted = await openQueue();

    // Then only position 1 can go out until it is acknowledged
    expect(restarted.snapshot()).toMatchObject({ settledThrough: 0, sendableThrough: 1 });
    expect(restarted.batchFrom(1)).toMatchObject({ last: 1, outbox: { after: 0, first: 1 } });
    expect(restarted.batchFrom(2)).toBeUndefined();

    // When the cloud acknowledges position 1, position 2 is settled with it (it can never be sent)
    await restarted.acknowledge(restarted.outboxId, 1);
    expect(restarted.snapshot()).toMatchObject({ settledThrough: 2, sendableThrough: 4 });
    expect(restarted.batchFrom(3)).toMatchObject({ last: 4, outbox: { after: 2, first: 3 } });
  });

  it('compacts the journal down to the unacknowledged events', async () => {
    // Given a queue that compacts after three obsolete records, holding five events
    const queue = await openQueue({ compactAfter: 3 });
    await enqueueAll(queue, 1, 5);

    // When four are acknowledged before the link fails
    await expect(deliverAll(queue, fakeLink([5]).send)).rejects.toThrow('link down');

    // Then the journal holds only what is still pending after its compaction (event 4 was acknowledged after it)
    const records = (await journalLines()).map((line) => (JSON.parse(line) as { event: AgentEvent }).event.eventId);
    expect(records).toEqual(ids(4, 5));
    const restarted = await restart(queue, { compactAfter: 3 });
    const link = fakeLink();
    await deliverAll(restarted, link.send);
    expect(link.delivered).toEqual(ids(5, 5));
  });

  it('loses nothing when a crash interrupts compaction before the rename', async () => {
    // Given two acknowledged and two pending events, and a compaction's temporary file left half written by a crash
    const queue = await openQueue({ compactAfter: 100 });
    await enqueueAll(queue, 1, 4);
    await expect(deliverAll(queue, fakeLink([3]).send)).rejects.toThrow('link down');
    await queue.close();
    await writeFile(join(directory, 'journal.jsonl.tmp'), '{"seq":3,"event":{"eventId":"evt-00003"');

    // When the agent restarts and delivers
    const restarted = await openQueue({ compactAfter: 100 });
    const link = fakeLink();
    await deliverAll(restarted, link.send);

    // Then the pending events arrive in order, the acknowledged ones are not resent, and the temporary file is gone
    expect(link.delivered).toEqual(ids(3, 4));
    expect(await readdir(directory)).not.toContain('journal.jsonl.tmp');
  });

  it('takes events enqueued while a send is waiting on the link, in order', async () => {
    // Given one queued event and a link whose first send hangs until released
    const queue = await openQueue();
    await queue.enqueue(teleoperationStarted(1));
    const delivered: string[] = [];
    let release: () => void = () => undefined;
    const firstSendHeld = new Promise<void>((resolve) => {
      release = resolve;
    });
    const send = async (event: AgentEvent): Promise<void> => {
      if (delivered.length === 0) await firstSendHeld;
      delivered.push(event.eventId);
    };

    // When nineteen events are enqueued concurrently while the send waits, then the link answers
    const delivering = deliverAll(queue, send);
    const enqueues = Promise.all(ids(2, 20).map((_, i) => queue.enqueue(teleoperationStarted(i + 2))));
    await enqueues;
    release();
    const count = await delivering;

    // Then all twenty were delivered in order and nothing is left, even after a restart
    expect(count).toBe(20);
    expect(delivered).toEqual(ids(1, 20));
    const restarted = await restart(queue);
    expect(restarted.stats()).toMatchObject({ pending: 0, corruptRecords: 0 });
  });

  it('keeps every acknowledged enqueue when the agent process is killed with SIGKILL mid-stream', async () => {
    // Given a child agent that enqueues events in a loop and prints each eventId once enqueue resolved
    const script = await childScript('enqueue-forever.mts', [
      'for (let n = 1; ; n += 1) {',
      "  const eventId = `evt-${String(n).padStart(5, '0')}`;",
      "  await queue.enqueue({ eventId, occurredAt: '2026-11-22T20:00:00.000Z', type: 'TeleoperationStarted', data: { signals: ['actions'] } });",
      '  process.stdout.write(eventId + "\\n");',
      '}',
    ]);

    // When it is killed after at least 200 acknowledged enqueues
    const acknowledged = await runUntilKilled(script, 200);
    const restarted = await openQueue({ maxEvents: 100_000 }, join(directory, 'queue'));
    const link = fakeLink();
    await deliverAll(restarted, link.send);

    // Then every acknowledged event is there, in order, with at most the one in flight after them
    expect(acknowledged.length).toBeGreaterThanOrEqual(200);
    expect(link.delivered.slice(0, acknowledged.length)).toEqual(acknowledged);
    expect(link.delivered).toEqual(ids(1, link.delivered.length));
    expect(link.delivered.length - acknowledged.length).toBeLessThanOrEqual(1);
  });
});

describe('event queue: outbox identity and acknowledgements', () => {
  it('makes an outbox id with a new queue and keeps it in state.json across a restart', async () => {
    const queue = await openQueue();
    const outboxId = queue.outboxId;
    expect(outboxId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(await readState()).toMatchObject({ outboxId, acknowledgedSeq: 0, droppedCount: 0 });
    await enqueueAll(queue, 1, 2);
    const restarted = await restart(queue);
    expect(restarted.outboxId).toBe(outboxId);
    expect(restarted.batchFrom(1)?.outbox).toEqual({ id: outboxId, after: 0, first: 1 });
  });

  it('makes a new outbox id when state.json is lost while the journal still has events, and sends them all again', async () => {
    // Given three events of which two were acknowledged
    const queue = await openQueue();
    await enqueueAll(queue, 1, 3);
    const oldId = queue.outboxId;
    await queue.acknowledge(oldId, 2);
    await queue.close();

    // When state.json is lost
    await rm(join(directory, 'state.json'));
    const restarted = await openQueue();

    // Then a new outbox starts, with every journaled event pending under it (the cloud dedupes on eventId)
    expect(restarted.outboxId).not.toBe(oldId);
    expect((await readState()).outboxId).toBe(restarted.outboxId);
    const link = fakeLink();
    await deliverAll(restarted, link.send);
    expect(link.delivered).toEqual(ids(1, 3));
    // An acknowledgement for the old outbox changes nothing
    await restarted.enqueue(teleoperationStarted(4));
    await expect(restarted.acknowledge(oldId, 10)).resolves.toBe(0);
    expect(restarted.stats().pending).toBe(1);
  });

  it('makes a new outbox id when state.json is unreadable, and says so', async () => {
    const queue = await openQueue();
    await enqueueAll(queue, 1, 2);
    const oldId = queue.outboxId;
    await queue.close();
    await writeFile(join(directory, 'state.json'), '{"outboxId": ');
    const restarted = await openQueue();
    expect(restarted.outboxId).not.toBe(oldId);
    expect(restarted.stats().pending).toBe(2);
    expect(warnings.some((warning) => warning.includes('state unreadable'))).toBe(true);
  });

  it('gives a queue written before outbox ids existed an id, keeping what it had acknowledged', async () => {
    const queue = await openQueue();
    await enqueueAll(queue, 1, 3);
    await queue.close();
    await writeFile(join(directory, 'state.json'), JSON.stringify({ acknowledgedSeq: 1, droppedCount: 0 }));
    const restarted = await openQueue();
    expect(restarted.stats()).toMatchObject({ pending: 2, acknowledgedSeq: 1 });
    expect((await readState()).outboxId).toBe(restarted.outboxId);
  });

  it('hands out batches without forgetting them, and an ack removes exactly the events up to through', async () => {
    // Given seven events
    const queue = await openQueue();
    await enqueueAll(queue, 1, 7);

    // When batches of three are taken
    const limits = { maxEvents: 3, maxBytes: 100_000 };
    const first = queue.batchFrom(1, limits);
    const second = queue.batchFrom(4, limits);
    const third = queue.batchFrom(7, limits);

    // Then they cover the positions in order, and nothing left the queue
    expect([first, second, third].map((batch) => [batch?.outbox.first, batch?.last])).toEqual([[1, 3], [4, 6], [7, 7]]);
    expect(second?.events.map((event) => event.eventId)).toEqual(ids(4, 6));
    expect(queue.stats().pending).toBe(7);

    // When the cloud acknowledges through 5 (inside the second batch)
    await expect(queue.acknowledge(queue.outboxId, 5)).resolves.toBe(5);

    // Then exactly 1..5 are gone, the next message says so, and a late or duplicated ack changes nothing
    expect(queue.stats()).toMatchObject({ pending: 2, acknowledgedSeq: 5 });
    expect(queue.batchFrom(6, limits)?.outbox).toEqual({ id: queue.outboxId, after: 5, first: 6 });
    expect(queue.batchFrom(4, limits)).toBeUndefined();
    await expect(queue.acknowledge(queue.outboxId, 3)).resolves.toBe(0);
    await expect(queue.acknowledge(queue.outboxId, 5)).resolves.toBe(0);
    expect(queue.stats().pending).toBe(2);

    // And the acknowledgement is on disk
    const restarted = await restart(queue);
    expect(restarted.stats()).toMatchObject({ pending: 2, acknowledgedSeq: 5 });
    expect((await readState()).acknowledgedSeq).toBe(5);
  });

  it('never puts more than maxBytes in a batch, but always at least one event', async () => {
    const queue = await openQueue();
    await enqueueAll(queue, 1, 4);
    const sizes: number[] = [];
    for (let from = 1; from <= 4; ) {
      const batch = queue.batchFrom(from, { maxEvents: 100, maxBytes: 1 });
      sizes.push(batch?.events.length ?? 0);
      from = (batch?.last ?? 4) + 1;
    }
    expect(sizes).toEqual([1, 1, 1, 1]);
  });

  it('keeps new positions beyond an acknowledgement that covers more than it queued (a restored backup)', async () => {
    const queue = await openQueue();
    await enqueueAll(queue, 1, 2);
    await queue.acknowledge(queue.outboxId, 9);
    expect(queue.stats()).toMatchObject({ pending: 0, acknowledgedSeq: 9 });
    await expect(queue.enqueue(teleoperationStarted(3))).resolves.toBe(10);
    const restarted = await restart(queue);
    await expect(restarted.enqueue(teleoperationStarted(4))).resolves.toBe(11);
  });

  it('keeps every acknowledgement that resolved when the agent process is killed with SIGKILL mid-stream', async () => {
    // Given a child agent with 500 queued events that acknowledges them one by one, printing each position once
    // acknowledge resolved
    const script = await childScript('acknowledge-forever.mts', [
      'const before = queue.stats().lastSeq;',
      'for (let n = before + 1; n <= 500; n += 1) {',
      "  await queue.enqueue({ eventId: `evt-${String(n).padStart(5, '0')}`, occurredAt: '2026-11-22T20:00:00.000Z', type: 'TeleoperationStarted', data: { signals: ['actions'] } });",
      '}',
      'process.stdout.write(`outbox ${queue.outboxId}\\n`);',
      'for (let through = queue.stats().acknowledgedSeq + 1; through <= 500; through += 1) {',
      '  await queue.acknowledge(queue.outboxId, through);',
      '  process.stdout.write(`${through}\\n`);',
      '}',
      'await new Promise(() => undefined);',
    ]);

    // When it is killed after at least 100 acknowledgements
    const printed = await runUntilKilled(script, 101);
    const outboxLine = printed[0] ?? '';
    const acknowledged = printed.slice(1).map(Number);
    const restarted = await openQueue({ maxEvents: 100_000 }, join(directory, 'queue'));

    // Then the outbox is the same, and every acknowledgement that resolved is on disk (plus at most the one in flight)
    expect(outboxLine).toBe(`outbox ${restarted.outboxId}`);
    const lastResolved = acknowledged.at(-1) ?? 0;
    expect(lastResolved).toBeGreaterThanOrEqual(100);
    const { acknowledgedSeq, pending, lastSeq } = restarted.stats();
    expect(lastSeq).toBe(500);
    expect(acknowledgedSeq - lastResolved).toBeGreaterThanOrEqual(0);
    expect(acknowledgedSeq - lastResolved).toBeLessThanOrEqual(1);
    expect(pending).toBe(500 - acknowledgedSeq);
    expect(restarted.batchFrom(acknowledgedSeq + 1)?.events[0]?.eventId).toBe(`evt-${String(acknowledgedSeq + 1).padStart(5, '0')}`);
  });
});

/** A script for a child agent: opens the queue in `<directory>/queue`, then runs `body`. */
async function childScript(name: string, body: string[]): Promise<string> {
  const queueModule = pathToFileURL(resolve('agent/adapters/event-queue.ts')).href;
  const script = join(directory, name);
  await writeFile(
    script,
    [
      `import { EventQueue } from ${JSON.stringify(queueModule)};`,
      `const queue = new EventQueue({ directory: ${JSON.stringify(join(directory, 'queue'))}, maxEvents: 100000 });`,
      'await queue.open();',
      ...body,
    ].join('\n'),
  );
  return script;
}

/** Runs `script` in a child process and SIGKILLs it once it printed `lines` lines; resolves with every line read. */
async function runUntilKilled(script: string, lines: number): Promise<string[]> {
  // One node process with tsx as a loader: the tsx CLI would put a second process in between that SIGKILL misses.
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: process.cwd(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const printed: string[] = [];
  let buffered = '';
  // A watchdog, so a child that never gets going cannot outlive the test.
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await new Promise<void>((resolveKilled, reject) => {
    child.on('error', reject);
    // 'close', not 'exit': every line the child printed before dying has been read by then.
    child.on('close', () => {
      clearTimeout(watchdog);
      resolveKilled();
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const complete = buffered.split('\n');
      buffered = complete.pop() ?? '';
      printed.push(...complete);
      if (printed.length >= lines) child.kill('SIGKILL');
    });
  });
  return printed;
}
