import type { z } from 'zod';

/** Reading commands from the cloud: a payload that is not JSON, or a field that is wrong, is named, never thrown. */

export function parseJsonPayload(payload: Buffer): { ok: true; value: unknown } | { ok: false } {
  const text = payload.toString('utf8').trim();
  if (text.length === 0) return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

export function firstProblem(error: z.ZodError): { field: string; problem: string | undefined } {
  const problem = error.issues[0];
  return { field: problem?.path.join('.') || '(payload)', problem: problem?.message };
}
