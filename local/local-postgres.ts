import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
import { migrate } from '../functions/adapters/pg-migrations.js';

/**
 * The read models' PostgreSQL for the local cloud: a server when `DATABASE_URL` is given, else PGlite (PostgreSQL
 * compiled to WebAssembly, persisted in a folder) served on a local port through pglite-socket, so the handlers'
 * `pg` pools talk to it exactly as they talk to Aurora. PGlite is one connection underneath; pglite-socket
 * multiplexes client connections onto it and keeps a transaction's statements together.
 */
export interface LocalPostgres {
  readonly url: string;
  /** 'pglite' (embedded, under the state dir) or 'server' (DATABASE_URL). */
  readonly kind: 'pglite' | 'server';
  /** The migrations applied by this start (empty when the schema was current). */
  readonly applied: readonly string[];
  stop(): Promise<void>;
}

export class LocalPostgresError extends Error {
  override readonly name = 'LocalPostgresError';
}

/**
 * `port`: where PGlite's socket listens, on 127.0.0.1 only (0 or absent: a free port); unused with `databaseUrl`.
 */
export async function startLocalPostgres(options: { dataDir: string; databaseUrl?: string; port?: number }): Promise<LocalPostgres> {
  if (options.databaseUrl) {
    const applied = await migrateAt(options.databaseUrl, `the PostgreSQL server at DATABASE_URL`);
    return { url: options.databaseUrl, kind: 'server', applied, stop: async () => {} };
  }

  await mkdir(options.dataDir, { recursive: true });
  let db: PGlite;
  try {
    db = await PGlite.create(options.dataDir);
  } catch (error) {
    throw new LocalPostgresError(
      `The embedded PostgreSQL in ${options.dataDir} cannot be opened (${(error as Error).message}). ` +
        'Delete that folder to start with empty read models (npm run rebuild-read-models refills them from the event log).',
    );
  }
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: options.port ?? 0, maxConnections: 16 });
  try {
    await server.start();
  } catch (error) {
    await db.close().catch(() => {});
    throw new LocalPostgresError(`The embedded PostgreSQL cannot listen on 127.0.0.1:${options.port ?? 0} (${(error as Error).message}).`);
  }
  const port = Number((server as unknown as { port: number }).port);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`;
  try {
    const applied = await migrateAt(url, `the embedded PostgreSQL in ${options.dataDir}`);
    return {
      url,
      kind: 'pglite',
      applied,
      stop: async () => {
        await server.stop();
        await db.close();
      },
    };
  } catch (error) {
    await server.stop().catch(() => {});
    await db.close().catch(() => {});
    throw error;
  }
}

async function migrateAt(url: string, where: string): Promise<string[]> {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    return await migrate(pool);
  } catch (error) {
    throw new LocalPostgresError(`Could not apply the read model migrations to ${where}: ${(error as Error).message}`);
  } finally {
    await pool.end();
  }
}
