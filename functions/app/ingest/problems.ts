import type { z } from 'zod';
import { fieldProblems, type FieldProblem } from '../../platform/validation.js';

/** Names the whole message when an issue has no field (a payload that is not an object). */
export const WHOLE_PAYLOAD = '(payload)';

/** zod's issues as field problems; an issue without a path is about the whole payload. */
export function problemsOf(error: z.ZodError | undefined): FieldProblem[] {
  return error ? fieldProblems(error, WHOLE_PAYLOAD) : [];
}

/** The id a rejected payload claims, for the log line; cut short because it was not validated. */
export function claimedId(payload: unknown, field: 'clientId' | 'thingName'): string | null {
  if (typeof payload !== 'object' || payload === null) return null;
  const value = (payload as Record<string, unknown>)[field];
  return typeof value === 'string' ? value.slice(0, 128) : null;
}
