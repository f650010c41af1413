import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../functions/adapters/pg-migrations.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

describe('read model migrations', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
  });
  afterAll(() => db.drop());

  it('applies every migration once and records it', async () => {
    const first = await migrate(db.pool);
    expect(first).toContain('0001_read_models');
    const second = await migrate(db.pool);
    expect(second).toEqual([]);
    const tables = await db.pool.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining(['alerts', 'robot_events', 'robots', 'schema_migrations', 'teleoperation_sessions', 'telemetry_samples']),
    );
  });

  it('runs concurrent migrators one after the other', async () => {
    const other = await createTestDatabase({ migrate: false });
    try {
      const results = await Promise.all([migrate(other.pool), migrate(other.pool)]);
      expect(results.flat()).toEqual(['0001_read_models']);
    } finally {
      await other.drop();
    }
  });
});
