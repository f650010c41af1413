import type pg from 'pg';

/** Reading the read model tables whole, to compare two projections of the same log. */
export const READ_MODEL_TABLES = ['robots', 'robot_events', 'teleoperation_sessions', 'alerts', 'telemetry_samples'] as const;
export type ReadModelTable = (typeof READ_MODEL_TABLES)[number];

const ORDER: Record<ReadModelTable, string> = {
  robots: 'robot_id',
  robot_events: 'robot_id, seq',
  teleoperation_sessions: 'robot_id, started_seq',
  alerts: 'robot_id, raised_seq',
  telemetry_samples: 'robot_id, sampled_at',
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows of any read model table, compared whole
export type Row = Record<string, any>;

/** Every row in key order, without `updated_at` (when a row was written is not what it says). */
export async function readRows(pool: pg.Pool, table: ReadModelTable): Promise<Row[]> {
  const { rows } = await pool.query<Row>(`SELECT * FROM ${table} ORDER BY ${ORDER[table]}`);
  return rows.map(({ updated_at: _written, ...row }) => row);
}

export async function snapshot(pool: pg.Pool): Promise<Record<ReadModelTable, Row[]>> {
  const tables = await Promise.all(READ_MODEL_TABLES.map(async (table) => [table, await readRows(pool, table)] as const));
  return Object.fromEntries(tables) as Record<ReadModelTable, Row[]>;
}

export async function truncateReadModels(pool: pg.Pool): Promise<void> {
  await pool.query(`TRUNCATE ${READ_MODEL_TABLES.join(', ')}`);
}

/**
 * What a rebuild from the log must give back: everything an incremental projection wrote, except the sample history
 * (samples are not in the log), of which a rebuild has each robot's latest sample.
 */
export function expectedAfterRebuild(incremental: Record<ReadModelTable, Row[]>): Record<ReadModelTable, Row[]> {
  return {
    ...incremental,
    telemetry_samples: incremental.robots
      .filter((robot) => robot.telemetry)
      .map((robot) => ({ robot_id: robot.robot_id, sampled_at: robot.telemetry_at, sample: robot.telemetry })),
  };
}
