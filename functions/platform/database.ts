import { Signer } from '@aws-sdk/rds-signer';
import pg from 'pg';
import type { DatabaseEnv } from './env.js';
import { logger } from './observability.js';

/**
 * A pg pool from the environment. In Lambda one connection per container is enough (one event at a time) and RDS
 * Proxy multiplexes them; locally and in tests the URL points at a server.
 */
export function createPool(env: DatabaseEnv, options: { max?: number } = {}): pg.Pool {
  const pool = newPool(env, options.max ?? 1);
  // The server closing an idle connection (a failover, a proxy's idle timeout, a dropped test database) makes the pool
  // emit 'error'; unheard, that event would crash the whole process. The pool discards the client and the next
  // query opens a new one, so a warning is all it takes.
  // Name and message only: pg hangs the whole client (its socket, parser state and type tables) on the error.
  pool.on('error', (error) => logger.warn('Idle PostgreSQL connection closed by the server', { error: { name: error.name, message: error.message } }));
  return pool;
}

function newPool(env: DatabaseEnv, max: number): pg.Pool {
  if ('DATABASE_URL' in env) return new pg.Pool({ connectionString: env.DATABASE_URL, max });
  const signer = new Signer({ hostname: env.DB_HOST, port: env.DB_PORT, username: env.DB_USER, region: env.AWS_REGION });
  return new pg.Pool({
    host: env.DB_HOST,
    port: env.DB_PORT,
    database: env.DB_NAME,
    user: env.DB_USER,
    // IAM auth tokens live 15 minutes; pg asks for a password per new connection, so each gets a fresh token.
    password: env.DB_IAM_AUTH ? () => signer.getAuthToken() : undefined,
    ssl: { rejectUnauthorized: true },
    max,
    idleTimeoutMillis: 60_000,
  });
}
