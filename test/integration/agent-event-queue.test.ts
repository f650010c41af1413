import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
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

  it('delivers oldest first and keeps an event whose send failed at the head for the retry', async () => {
    // Given five queued events and a link that fails on its third attempt
    const queue = await openQueue();
    await enqueueAll(queue, 1, 5);
    const link = fakeLink([3]);

    // When the queue is drained, fails, and is drained again
    await expect(queue.drain(link.send)).rejects.toThrow('link down');
    const afterFailure = queue.stats().pending;
    const deliveredByRetry = await queue.drain(link.send);

    // Then the failed event stayed queued and every event arrived once, in order
    expect(afterFailure).toBe(3);
    expect(deliveredByRetry).toBe(3);
    expect(link.delivered).toEqual(ids(1, 5));
    expect(queue.stats().pending).toBe(0);
  });

  it('keeps pending events across an agent restart and does not resend acknowledged ones', async () => {
    // Given four events of which two were delivered before the link failed
    const first = await openQueue();
    await enqueueAll(first, 1, 4);
    const before = fakeLink([3]);
    await expect(first.drain(before.send)).rejects.toThrow('link down');

    // When the agent restarts and drains
    const second = await restart(first);
    const after = fakeLink();
    await second.drain(after.send);

    // Then exactly the undelivered events go out, in order
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
    await restarted.drain(link.send);

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
    await queue.drain(link.send);
    expect(link.delivered).toEqual(ids(3, 4));
    expect(queue.stats().droppedCount).toBe(2);
  });

  it('clears the dropped count only once its report was delivered, also across a restart', async () => {
    // Given two dropped events
    const queue = await openQueue({ maxEvents: 1 });
    await enqueueAll(queue, 1, 3);

    // When a first report fails and a second succeeds, then the agent restarts
    await expect(
      queue.reportDropped(async () => {
        throw new Error('link down');
      }),
    ).rejects.toThrow('link down');
    const countAfterFailedReport = queue.stats().droppedCount;
    const reported: number[] = [];
    await queue.reportDropped(async (count) => {
      reported.push(count);
    });
    const restarted = await restart(queue, { maxEvents: 1 });

    // Then the failed report kept the count, the delivered one cleared it for good
    expect(countAfterFailedReport).toBe(2);
    expect(reported).toEqual([2]);
    expect(restarted.stats().droppedCount).toBe(0);
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
    await again.drain(link.send);

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

    // When the agent restarts and drains
    const restarted = await restart(reopened);
    const link = fakeLink();
    await restarted.drain(link.send);

    // Then both events arrive and the corrupt record is counted, not fatal
    expect(link.delivered).toEqual(ids(1, 2));
    expect(restarted.stats().corruptRecords).toBe(1);
  });

  it('compacts the journal down to the unacknowledged events', async () => {
    // Given a queue that compacts after three obsolete records, holding five events
    const queue = await openQueue({ compactAfter: 3 });
    await enqueueAll(queue, 1, 5);

    // When four are delivered before the link fails
    await expect(queue.drain(fakeLink([5]).send)).rejects.toThrow('link down');

    // Then the journal holds only what is still pending after its compaction (event 4 was acknowledged after it)
    const records = (await journalLines()).map((line) => (JSON.parse(line) as { event: AgentEvent }).event.eventId);
    expect(records).toEqual(ids(4, 5));
    const restarted = await restart(queue, { compactAfter: 3 });
    const link = fakeLink();
    await restarted.drain(link.send);
    expect(link.delivered).toEqual(ids(5, 5));
  });

  it('loses nothing when a crash interrupts compaction before the rename', async () => {
    // Given two delivered and two pending events, and a compaction's temporary file left half written by a crash
    const queue = await openQueue({ compactAfter: 100 });
    await enqueueAll(queue, 1, 4);
    await expect(queue.drain(fakeLink([3]).send)).rejects.toThrow('link down');
    await queue.close();
    await writeFile(join(directory, 'journal.jsonl.tmp'), '{"seq":3,"event":{"eventId":"evt-00003"');

    // When the agent restarts and drains
    const restarted = await openQueue({ compactAfter: 100 });
    const link = fakeLink();
    await restarted.drain(link.send);

    // Then the pending events arrive in order, the delivered ones are not resent, and the temporary file is gone
    expect(link.delivered).toEqual(ids(3, 4));
    expect(await readdir(directory)).not.toContain('journal.jsonl.tmp');
  });

  it('takes events enqueued while a drain is waiting on the link, in order', async () => {
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

    // When nineteen events are enqueued concurrently while the drain waits, then the link answers
    const draining = queue.drain(send);
    const enqueues = Promise.all(ids(2, 20).map((_, i) => queue.enqueue(teleoperationStarted(i + 2))));
    await enqueues;
    release();
    const count = await draining;

    // Then the drain delivered all twenty in order and nothing is left, even after a restart
    expect(count).toBe(20);
    expect(delivered).toEqual(ids(1, 20));
    const restarted = await restart(queue);
    expect(restarted.stats()).toMatchObject({ pending: 0, corruptRecords: 0 });
  });

  it('keeps every acknowledged enqueue when the agent process is killed with SIGKILL mid-stream', async () => {
    // Given a child agent that enqueues events in a loop and prints each eventId once enqueue resolved
    const queueModule = pathToFileURL(resolve('agent/adapters/event-queue.ts')).href;
    const script = join(directory, 'enqueue-forever.mts');
    await writeFile(
      script,
      [
        `import { EventQueue } from ${JSON.stringify(queueModule)};`,
        `const queue = new EventQueue({ directory: ${JSON.stringify(join(directory, 'queue'))}, maxEvents: 100000 });`,
        'await queue.open();',
        'for (let n = 1; ; n += 1) {',
        "  const eventId = `evt-${String(n).padStart(5, '0')}`;",
        "  await queue.enqueue({ eventId, occurredAt: '2026-11-22T20:00:00.000Z', type: 'TeleoperationStarted', data: { signals: ['actions'] } });",
        '  process.stdout.write(eventId + "\\n");',
        '}',
      ].join('\n'),
    );
    // One node process with tsx as a loader: the tsx CLI would put a second process in between that SIGKILL misses.
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: process.cwd(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const acknowledged: string[] = [];
    let buffered = '';

    // When it is killed after at least 200 acknowledged enqueues
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
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        acknowledged.push(...lines);
        if (acknowledged.length >= 200) child.kill('SIGKILL');
      });
    });
    const restarted = await openQueue({ maxEvents: 100_000 }, join(directory, 'queue'));
    const link = fakeLink();
    await restarted.drain(link.send);

    // Then every acknowledged event is there, in order, with at most the one in flight after them
    expect(acknowledged.length).toBeGreaterThanOrEqual(200);
    expect(link.delivered.slice(0, acknowledged.length)).toEqual(acknowledged);
    expect(link.delivered).toEqual(ids(1, link.delivered.length));
    expect(link.delivered.length - acknowledged.length).toBeLessThanOrEqual(1);
  });
});

describe('event queue: batches', () => {
  it('hands the backlog over in order, in batches bounded by count and bytes, removing each only once sent', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'queue-batches-'));
    try {
      const queue = new EventQueue({ directory, log: () => {} });
      await queue.open();
      for (let n = 1; n <= 7; n += 1) {
        await queue.enqueue({ eventId: `event-${String(n).padStart(8, '0')}`, occurredAt: '2026-11-22T08:00:00.000Z', type: 'TeleoperationStopped', data: { reason: 'idle' } });
      }
      const batches: string[][] = [];
      let fail = true;
      // A failed send keeps its batch (and everything after it) queued
      await expect(
        queue.drainBatches(async (events) => {
          if (fail) throw new Error('link down');
          batches.push(events.map((event) => event.eventId));
        }, { maxEvents: 3, maxBytes: 100_000 }),
      ).rejects.toThrow('link down');
      expect(queue.stats().pending).toBe(7);

      fail = false;
      await queue.drainBatches(async (events) => void batches.push(events.map((event) => event.eventId.slice(-1))), { maxEvents: 3, maxBytes: 100_000 });
      expect(batches).toEqual([['1', '2', '3'], ['4', '5', '6'], ['7']]);
      expect(queue.stats().pending).toBe(0);
      await queue.close();

      // Nothing comes back after a restart: the acknowledgements were on disk
      const reopened = new EventQueue({ directory, log: () => {} });
      await reopened.open();
      expect(reopened.stats().pending).toBe(0);
      await reopened.close();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('never puts more than maxBytes in a batch, but always at least one event', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'queue-batches-'));
    try {
      const queue = new EventQueue({ directory, log: () => {} });
      await queue.open();
      for (let n = 1; n <= 4; n += 1) {
        await queue.enqueue({ eventId: `event-${String(n).padStart(8, '0')}`, occurredAt: '2026-11-22T08:00:00.000Z', type: 'TeleoperationStopped', data: { reason: 'idle' } });
      }
      const sizes: number[] = [];
      await queue.drainBatches(async (events) => void sizes.push(events.length), { maxEvents: 100, maxBytes: 1 });
      expect(sizes).toEqual([1, 1, 1, 1]);
      await queue.close();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
