import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LOCAL_AWS, freePort, startDynamoDbLocal, type DynamoDbLocal } from '../../local/dynamodb-local.js';
import { type PartHealth, type RestartablePart, type SupervisedPart, Supervisor, type SupervisorLogEntry } from '../../local/supervisor.js';
import { createEventLogTable } from '../../local/tables.js';
import { POLL } from '../support/poll.js';

/**
 * DynamoDB Local killed under the running local cloud must never be a silent failure: the supervisor restarts the
 * Java process on the same port and data (the clients' endpoint stays valid, the data is still there), and past its
 * bound calls onFatal with a message naming what died and what to do. Then the supervisor's rules on fakes, where
 * timing can be controlled.
 */

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const ADVICE = 'Check that Java 17 runs (java -version) and that the disk is not full, then start the local cloud again (npm start).';

describe('DynamoDB Local under the supervisor', () => {
  let dbPath: string;
  let port: number;
  const fatal: { message: string; part: PartHealth }[] = [];
  const logs: SupervisorLogEntry[] = [];
  const pids: number[] = [];
  let supervisor: Supervisor;
  let dynamo: SupervisedPart<DynamoDbLocal>;
  let client: DynamoDBClient;
  const table = 'event-log-supervised';

  beforeAll(async () => {
    dbPath = await mkdtemp(join(tmpdir(), 'dynamodb-supervised-'));
    port = await freePort();
    supervisor = new Supervisor({ onFatal: (message, part) => fatal.push({ message, part }), log: (entry) => logs.push(entry) });
    dynamo = await supervisor.supervise({
      name: 'DynamoDB Local (event log)',
      start: () => startDynamoDbLocal({ port, dbPath, detached: true }),
      maxRestarts: 2,
      windowMs: 120_000,
      restartDelayMs: 100,
      advice: ADVICE,
      onStarted: (started) => void pids.push(started.pid!),
    });
    client = new DynamoDBClient({ ...LOCAL_AWS, endpoint: dynamo.current().endpoint });
    await createEventLogTable(client, table);
  }, 120_000);

  afterAll(async () => {
    supervisor?.stop();
    await dynamo?.stop();
    client?.destroy();
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await rm(dbPath, { recursive: true, force: true });
  });

  const put = (seq: number) =>
    client.send(new PutItemCommand({ TableName: table, Item: { robotId: { S: 'lekiwi-LK0001' }, seq: { N: String(seq) }, note: { S: `item ${seq}` } } }));
  const get = async (seq: number) =>
    (await client.send(new GetItemCommand({ TableName: table, Key: { robotId: { S: 'lekiwi-LK0001' }, seq: { N: String(seq) } }, ConsistentRead: true }))).Item?.note?.S;

  /** SIGKILLs the running Java process (its own process group, as the local cloud starts it) and waits until it is gone. */
  async function kill(): Promise<number> {
    const pid = dynamo.current().pid!;
    expect(isAlive(pid)).toBe(true);
    process.kill(pid, 'SIGKILL');
    await expect.poll(() => isAlive(pid), { message: `pid ${pid} to die` }).toBe(false);
    return pid;
  }

  it('comes back on the same endpoint with what it had written, after each SIGKILL up to the bound', async () => {
    const endpoint = dynamo.current().endpoint;
    expect(endpoint).toBe(`http://127.0.0.1:${port}`);
    expect(dynamo.health()).toEqual({ name: 'DynamoDB Local (event log)', status: 'up', restarts: 0 });
    await put(1);

    for (const restart of [1, 2]) {
      const killed = await kill();
      // Noticed at once, and said loudly.
      await expect.poll(() => dynamo.health().restarts, { message: `restart ${restart} to begin` }).toBe(restart);
      expect(logs.some((entry) => entry.level === 'error' && String(entry.message).includes('was killed by SIGKILL') && entry.message.includes('restarting'))).toBe(true);
      // A Java process starting: longer than the default wait.
      await expect.poll(() => dynamo.health().status, { message: `restart ${restart} to finish`, timeout: 60_000 }).toBe('up');
      expect(dynamo.current().pid).not.toBe(killed);
      expect(dynamo.current().endpoint).toBe(endpoint);
      // The same client, the same endpoint: everything written before the kill is there, and it takes writes.
      for (let seq = 1; seq <= restart; seq++) expect(await get(seq)).toBe(`item ${seq}`);
      await put(restart + 1);
      expect(await get(restart + 1)).toBe(`item ${restart + 1}`);
    }
    expect(dynamo.health()).toMatchObject({ status: 'up', restarts: 2, lastError: expect.stringContaining('was killed by SIGKILL') });
    expect(fatal).toEqual([]);
  }, 120_000);

  it('past the bound, stays down and calls onFatal once with what died and what to do', async () => {
    const killed = await kill();
    const { message, part } = await vi.waitFor(() => {
      expect(fatal[0], 'onFatal').toBeDefined();
      return fatal[0]!;
    }, POLL);
    expect(message).toContain('DynamoDB Local (event log) died and was not restarted');
    expect(message).toContain(`was killed by SIGKILL (pid ${killed}, port ${port})`);
    expect(message).toContain('restarted 2 time(s) within 120 s');
    expect(message).toContain(ADVICE);
    expect(part).toMatchObject({ name: 'DynamoDB Local (event log)', status: 'down', restarts: 2 });
    expect(dynamo.health().status).toBe('down');
    expect(supervisor.health()).toEqual([dynamo.health()]);
    // Not restarted: nothing answers on the port, and no Java process was left behind.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(pids.filter(isAlive)).toEqual([]);
    await expect(get(1)).rejects.toThrow();
    expect(fatal).toHaveLength(1);
    await dynamo.stop(); // stopping a dead part is fine
  }, 60_000);
});

/** A part whose life the test controls. */
class FakePart implements RestartablePart {
  static started = 0;
  readonly id = ++FakePart.started;
  private end: (how: string) => void = () => {};
  readonly exited = new Promise<string>((resolve) => (this.end = resolve));
  stopped = false;
  die(how = 'exited with code 137'): void {
    this.end(how);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    this.end('stopped');
  }
}

describe('the supervisor', () => {
  it('counts restarts within the window only, and never restarts what was stopped', async () => {
    const fatal: string[] = [];
    const supervisor = new Supervisor({ onFatal: (message) => fatal.push(message), log: () => undefined });
    const part = await supervisor.supervise({ name: 'fake', start: async () => new FakePart(), maxRestarts: 2, windowMs: 300, restartDelayMs: 0, advice: 'do X' });
    for (let i = 0; i < 4; i++) {
      const before = part.current();
      before.die();
      await vi.waitFor(() => {
        expect(part.current(), `restart ${i + 1}`).not.toBe(before);
        expect(part.health().status, `restart ${i + 1}`).toBe('up');
      }, POLL);
      // Two deaths per window at most: wait the window out after every second one.
      if (i % 2 === 1) await new Promise((resolve) => setTimeout(resolve, 350));
    }
    expect(part.health()).toMatchObject({ status: 'up', restarts: 4 });
    expect(fatal).toEqual([]);
    const last = part.current();
    await part.stop();
    expect(last.stopped).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(part.current()).toBe(last);
    expect(fatal).toEqual([]);
  });

  it('gives up when restarts fail, with the failure in the message', async () => {
    const fatal: string[] = [];
    const supervisor = new Supervisor({ onFatal: (message) => fatal.push(message), log: () => undefined });
    let starts = 0;
    const part = await supervisor.supervise({
      name: 'fake',
      start: async () => {
        if (++starts > 1) throw new Error('port 8000 is in use');
        return new FakePart();
      },
      maxRestarts: 3,
      restartDelayMs: 0,
      advice: 'free the port',
    });
    part.current().die('was killed by SIGKILL');
    await expect.poll(() => fatal.length, { message: 'onFatal' }).toBeGreaterThan(0);
    expect(starts).toBe(4);
    expect(fatal[0]).toBe(
      'fake died and was not restarted: fake could not be restarted: port 8000 is in use. It has been restarted 3 time(s) within 60 s and keeps dying. free the port',
    );
    expect(part.health()).toMatchObject({ status: 'down', restarts: 3 });
  });

  it('reports an in-process part down after failed probes in a row, and calls onFatal', async () => {
    const fatal: string[] = [];
    const supervisor = new Supervisor({ onFatal: (message) => fatal.push(message), log: () => undefined });
    let healthy = true;
    const pglite = supervisor.watch({
      name: 'PostgreSQL (embedded PGlite)',
      probe: async () => {
        if (!healthy) throw new Error('RuntimeError: unreachable');
      },
      intervalMs: 60_000,
      failuresBeforeDown: 2,
      advice: 'Stop the local cloud and start it again.',
    });
    expect(await pglite.probeNow()).toEqual({ name: 'PostgreSQL (embedded PGlite)', status: 'up', restarts: 0 });
    healthy = false;
    expect(await pglite.probeNow()).toMatchObject({ status: 'up', lastError: expect.stringContaining('unreachable') });
    expect(fatal).toEqual([]);
    expect(await pglite.probeNow()).toMatchObject({ status: 'down' });
    expect(fatal).toEqual([
      'PostgreSQL (embedded PGlite) stopped working: 2 health checks in a row failed (last: RuntimeError: unreachable). Stop the local cloud and start it again.',
    ]);
    expect(supervisor.health()).toEqual([pglite.health()]);
    supervisor.stop();
  });

  it('counts a probe that hangs as failed', async () => {
    const supervisor = new Supervisor({ onFatal: () => undefined, log: () => undefined });
    const hung = supervisor.watch({ name: 'Kinesis stand-in', probe: () => new Promise(() => {}), intervalMs: 60_000, timeoutMs: 50, advice: '' });
    expect(await hung.probeNow()).toMatchObject({ status: 'up', lastError: 'Kinesis stand-in failed a health check: no answer within 50 ms' });
    supervisor.stop();
  });
});
