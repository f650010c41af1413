import type pg from 'pg';
import type { OfflineTeleoperations } from '../app/expire-offline-teleoperation.js';

/**
 * Candidates for the teleoperation offline timeout, from the robots read model (the partial index of migration
 * 0002). Only a shortlist: each robot is decided again on its head in the event log.
 */
export class PgOfflineTeleoperations implements OfflineTeleoperations {
  constructor(private readonly pool: pg.Pool) {}

  async robotsOfflineWhileTeleoperated(offlineBefore: Date, limit: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ robot_id: string }>(
      `SELECT robot_id FROM robots
        WHERE teleoperation_active AND status = 'offline'
          AND (state -> 'presence' ->> 'since')::timestamptz <= $1
        ORDER BY (state -> 'presence' ->> 'since')::timestamptz, robot_id
        LIMIT $2`,
      [offlineBefore.toISOString(), limit],
    );
    return rows.map((row) => row.robot_id);
  }
}
