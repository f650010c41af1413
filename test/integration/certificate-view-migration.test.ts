import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MIGRATIONS_DIR, migrate } from '../../functions/adapters/pg-migrations.js';
import { PgFleetQueries } from '../../functions/adapters/pg-fleet-queries.js';
import { certificateView, toRobotView } from '../../functions/domain/robot-view.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { certificateStates } from '../support/certificate-states.js';

/**
 * Migration 0005 gives views projected before RobotView had `certificate` the field, from the stored state, by the
 * same rule as robot-view.ts `certificateView`: each state is stored as an older projector left it, then migrated.
 */
describe('migration 0005: the certificate of views projected before it', () => {
  let db: TestDatabase;
  let before: string;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    before = await mkdtemp(join(tmpdir(), 'hb-migrations-'));
    for (const name of await readdir(DEFAULT_MIGRATIONS_DIR)) {
      if (/^\d{4}_/.test(name) && name < '0005') await cp(join(DEFAULT_MIGRATIONS_DIR, name), join(before, name));
    }
  });
  afterAll(async () => {
    await db?.drop();
    if (before) await rm(before, { recursive: true, force: true });
  });

  it('derives each stored view its certificate from the state, and leaves views that have one alone', async () => {
    expect(await migrate(db.pool, before)).not.toContain('0005_certificate_view');
    const states = Object.entries(certificateStates());
    for (const [index, [name, state]] of states.entries()) {
      const robotId = `lekiwi-LK${String(index).padStart(4, '0')}`;
      const { certificate: _new, ...oldView } = toRobotView({ ...state, robotId }, 1, null);
      await db.pool.query(
        `INSERT INTO robots (robot_id, model, status, lifecycle, healthy, deployable, teleoperation_active,
           warning_alerts, critical_alerts, state, view, last_seq)
         VALUES ($1, 'lekiwi', 'offline', 'offline', false, false, false, 0, 0, $2, $3, 1)`,
        [robotId, JSON.stringify({ ...state, robotId }), JSON.stringify({ ...oldView, note: name })],
      );
    }
    // A view the new projector wrote is not touched, whatever its state says.
    const kept = { id: 'kept', issuedAt: null, notAfter: null, rotatedAt: null, lastRotationFailure: null };
    await db.pool.query(
      `INSERT INTO robots (robot_id, model, status, lifecycle, healthy, deployable, teleoperation_active,
         warning_alerts, critical_alerts, state, view, last_seq)
       SELECT 'lekiwi-KEPT', model, status, lifecycle, healthy, deployable, teleoperation_active, warning_alerts,
         critical_alerts, state, view || jsonb_build_object('certificate', $1::jsonb, 'robotId', 'lekiwi-KEPT'), last_seq
         FROM robots WHERE view->>'note' = 'rotated'`,
      [JSON.stringify(kept)],
    );

    expect(await migrate(db.pool)).toContain('0005_certificate_view');

    const { rows } = await db.pool.query<{ robot_id: string; view: Record<string, unknown> }>('SELECT robot_id, view FROM robots');
    expect(rows).toHaveLength(states.length + 1);
    for (const row of rows) {
      if (row.robot_id === 'lekiwi-KEPT') {
        expect(row.view.certificate).toEqual(kept);
        continue;
      }
      const state = certificateStates()[row.view.note as string]!;
      expect(row.view.certificate, String(row.view.note)).toEqual(certificateView(state));
    }

    // The API reads (GET /api/v2/robots and /robots/{id}) answer the field as stored.
    const queries = new PgFleetQueries(db.pool);
    const rotated = rows.find((row) => row.view.note === 'rotated' && row.robot_id !== 'lekiwi-KEPT')!;
    expect((await queries.getRobot(rotated.robot_id))?.certificate).toEqual(certificateView(certificateStates().rotated!));
    const page = await queries.listRobots({ limit: 100 });
    expect(page.items.map((item) => item.certificate)).toEqual(
      page.items.map((item) => rows.find((row) => row.robot_id === item.robotId)!.view.certificate),
    );
  });
});
