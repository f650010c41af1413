import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MIGRATIONS_DIR, migrate } from '../../functions/adapters/pg-migrations.js';
import { PgFleetQueries } from '../../functions/adapters/pg-fleet-queries.js';
import { PgReadModelWriter } from '../../functions/adapters/pg-read-models.js';
import { InvalidCursor } from '../../functions/app/http/fleet-queries.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { initialRobotState } from '../../functions/domain/robot-state.js';
import { batchJobId, type DomainEvent, type RecordedEvent } from '../../schemas/index.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * The software read model (issue 12, migration 0006): the projector writes RobotView.software and the
 * `software_version` column from the update events; GET /api/v2/robots?version= reads it through its index; rows
 * projected before 0006 get the empty software.
 */

const DEP = `dep-01KB${'0'.repeat(20)}CD`;
const JOB = batchJobId(DEP, 0);
const AT = Date.parse('2026-12-01T09:00:00Z');

const recorded = (seq: number, event: Omit<DomainEvent, 'version'>): RecordedEvent => ({
  seq,
  recordedAt: new Date(AT + seq).toISOString(),
  event: { version: 1, ...event } as DomainEvent,
});
const reported = (robotId: string, seq: number, version: string, previous: string | null) =>
  recorded(seq, { eventId: `sv-${robotId}-${seq}`, robotId, at: new Date(AT + seq).toISOString(), type: 'SoftwareVersionReported', data: { version, previous } } as never);

describe('software read model', () => {
  let db: TestDatabase;
  let queries: PgFleetQueries;
  beforeAll(async () => {
    db = await createTestDatabase();
    queries = new PgFleetQueries(db.pool);
    const writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
    const items = [
      reported('lekiwi-SW0001', 1, '1.0.0', null),
      reported('lekiwi-SW0002', 1, '1.0.0', null),
      reported('lekiwi-SW0003', 1, '1.0.0', null),
      reported('lekiwi-SW0004', 1, '0.9.0', null),
      recorded(2, { eventId: `update-queued:${JOB}`, robotId: 'lekiwi-SW0004', at: new Date(AT + 2).toISOString(), type: 'RobotUpdateQueued', data: { deploymentId: DEP, jobId: JOB, version: '1.0.0', kind: 'deploy', batch: 0 } } as never),
      recorded(3, { eventId: 'started-1', robotId: 'lekiwi-SW0004', at: new Date(AT + 3).toISOString(), type: 'RobotUpdateStarted', data: { deploymentId: DEP, jobId: JOB, version: '1.0.0', kind: 'deploy', fromVersion: '0.9.0', filesToFetch: 1, bytesToFetch: 10 } } as never),
    ].map((r) => ({ kind: 'event' as const, recorded: r }));
    await writer.applyBatch(items);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('projects the version and the running update into the view and the column', async () => {
    const installing = await queries.getRobot('lekiwi-SW0004');
    expect(installing?.software).toEqual({
      version: '0.9.0',
      update: { deploymentId: DEP, version: '1.0.0', state: 'installing', since: new Date(AT + 3).toISOString() },
    });
    expect(installing?.lifecycle).toBe('offline');
    expect(installing?.deployable).toBe(false);
    const { rows } = await db.pool.query<{ robot_id: string; software_version: string | null }>('SELECT robot_id, software_version FROM robots ORDER BY robot_id');
    expect(rows.map((row) => row.software_version)).toEqual(['1.0.0', '1.0.0', '1.0.0', '0.9.0']);
  });

  it('the success moves the column, and ?version= follows it', async () => {
    const writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
    await writer.applyBatch([
      {
        kind: 'event',
        recorded: recorded(4, { eventId: 'succeeded-1', robotId: 'lekiwi-SW0004', at: new Date(AT + 4).toISOString(), type: 'RobotUpdateSucceeded', data: { deploymentId: DEP, jobId: JOB, version: '1.0.0', kind: 'deploy', fromVersion: '0.9.0', filesFetched: 1, bytesFetched: 10, durationMs: 5 } } as never),
      },
    ]);
    expect((await queries.getRobot('lekiwi-SW0004'))?.software).toEqual({ version: '1.0.0', update: null });
    expect((await queries.listRobots({ limit: 10, version: '0.9.0' })).items).toEqual([]);
    const all = await queries.listRobots({ limit: 10, version: '1.0.0' });
    expect(all.items.map((item) => item.robotId)).toEqual(['lekiwi-SW0001', 'lekiwi-SW0002', 'lekiwi-SW0003', 'lekiwi-SW0004']);
  });

  it('pages ?version= with a cursor that belongs to its filter, through its index', async () => {
    const first = await queries.listRobots({ limit: 2, version: '1.0.0' });
    expect(first.items.map((item) => item.robotId)).toEqual(['lekiwi-SW0001', 'lekiwi-SW0002']);
    const second = await queries.listRobots({ limit: 2, version: '1.0.0', cursor: first.nextCursor! });
    expect(second.items.map((item) => item.robotId)).toEqual(['lekiwi-SW0003', 'lekiwi-SW0004']);
    expect(second.nextCursor).toBeNull();
    await expect(queries.listRobots({ limit: 2, version: '0.9.0', cursor: first.nextCursor! })).rejects.toBeInstanceOf(InvalidCursor);
    await expect(queries.listRobots({ limit: 2, cursor: first.nextCursor! })).rejects.toBeInstanceOf(InvalidCursor);
    // With sequential scans priced out, the plan shows which index the statement can walk (a tiny table would scan).
    const client = await db.pool.connect();
    try {
      await client.query('SET enable_seqscan = off');
      const plan = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT view, telemetry FROM robots WHERE software_version >= '1.0.0' AND software_version <= '1.0.0'
          ORDER BY software_version, robot_id LIMIT 3`,
      );
      expect(plan.rows.map((row) => row['QUERY PLAN']).join('\n')).toContain('robots_software_version_idx');
    } finally {
      await client.query('RESET enable_seqscan');
      client.release();
    }
  });
});

describe('migration 0006: the software of views projected before it', () => {
  let db: TestDatabase;
  let before: string;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    before = await mkdtemp(join(tmpdir(), 'hb-migrations-'));
    for (const name of await readdir(DEFAULT_MIGRATIONS_DIR)) {
      if (/^\d{4}_/.test(name) && name < '0006') await cp(join(DEFAULT_MIGRATIONS_DIR, name), join(before, name));
    }
  });
  afterAll(async () => {
    await db?.drop();
    if (before) await rm(before, { recursive: true, force: true });
  });

  it('gives old views the empty software and a null column, and the API answers it', async () => {
    expect(await migrate(db.pool, before)).not.toContain('0006_software_view');
    const state = initialRobotState('lekiwi-OLD001');
    const { software: _new, ...oldView } = toRobotView(state, 1, null);
    await db.pool.query(
      `INSERT INTO robots (robot_id, model, status, lifecycle, healthy, deployable, teleoperation_active,
         warning_alerts, critical_alerts, state, view, last_seq)
       VALUES ('lekiwi-OLD001', 'lekiwi', 'offline', 'offline', false, false, false, 0, 0, $1, $2, 1)`,
      [JSON.stringify(state), JSON.stringify(oldView)],
    );
    expect(await migrate(db.pool)).toContain('0006_software_view');
    const queries = new PgFleetQueries(db.pool);
    expect((await queries.getRobot('lekiwi-OLD001'))?.software).toEqual({ version: null, update: null });
    expect((await queries.listRobots({ limit: 10 })).items.map((item) => item.software)).toEqual([{ version: null, update: null }]);
  });
});
