import { z } from 'zod';
import { InvalidCursor } from '../app/http/fleet-queries.js';

/**
 * Opaque page cursors: base64url of a small JSON document holding the keyset position and the query it continues.
 * Binding the query in means a cursor pasted into another list (other filters, another robot) is refused instead of
 * silently giving a page of something else. There is no signature: a cursor grants nothing the caller could not ask
 * for directly, so the only goal is a clear 400 for anything this API did not produce.
 */
const BASE64URL = /^[A-Za-z0-9_-]+$/;

export function encodeCursor(payload: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
}

export function decodeCursor<T>(cursor: string, schema: z.ZodType<T>): T {
  // Node's base64url decoder skips characters it does not know; check the alphabet first so edits are noticed.
  if (!BASE64URL.test(cursor)) throw new InvalidCursor('is not a cursor this API handed out');
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursor('is not a cursor this API handed out');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new InvalidCursor('is not a cursor this API handed out');
  return parsed.data;
}
