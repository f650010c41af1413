import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { lambdaContext } from '../../local/lambda-context.js';
import { migrate } from '../../functions/adapters/pg-migrations.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/** Every migration the project has, in the order they apply. */
async function migrationIds(): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const { DEFAULT_MIGRATIONS_DIR } = await import('../../functions/adapters/pg-migrations.js');
  return (await readdir(DEFAULT_MIGRATIONS_DIR)).filter((name) => /^\d{4}_[\w-]+\.sql$/.test(name)).map((name) => name.replace(/\.sql$/, '')).sort();
}

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
      expect(results.flat().sort()).toEqual(await migrationIds());
    } finally {
      await other.drop();
    }
  });
});

describe('db-migrate handler (the deploy\'s migration step)', () => {
  it('migrates on create and update, and leaves the data alone on delete', async () => {
    const db = await createTestDatabase({ migrate: false });
    try {
      vi.stubEnv('DATABASE_URL', db.url);
      const { handler } = await import('../../functions/handlers/db-migrate.js');
      const request = (RequestType: string) =>
        ({ RequestType, ResourceProperties: {}, PhysicalResourceId: 'read-model-migrations' }) as unknown as CloudFormationCustomResourceEvent;

      const created = await handler(request('Create'), lambdaContext('db-migrate'));
      expect(created).toEqual({ PhysicalResourceId: 'read-model-migrations', Data: { Applied: (await migrationIds()).join(',') } });
      const updated = await handler(request('Update'), lambdaContext('db-migrate'));
      expect(updated).toEqual({ PhysicalResourceId: 'read-model-migrations', Data: { Applied: 'none' } });
      await handler(request('Delete'), lambdaContext('db-migrate'));
      const robots = await db.pool.query("SELECT to_regclass('public.robots') AS t");
      expect(robots.rows[0].t).toBe('robots');
    } finally {
      vi.unstubAllEnvs();
      await db.drop();
    }
  });
});
