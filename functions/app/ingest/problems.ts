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

/** The longest reason kept with a robot's rejection count (the log line has every problem). */
const MAX_REASON_LENGTH = 500;

/** Problems as one line: `sampledAt is more than 5 minutes ahead…; data.reason …` (cut at MAX_REASON_LENGTH). */
export function reasonOf(problems: readonly FieldProblem[]): string {
  const shown = problems.slice(0, 3).map((problem) => `${problem.field.slice(0, 128)} ${problem.message}`);
  const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : '';
  const reason = `${shown.join('; ')}${more}` || 'refused';
  return reason.length > MAX_REASON_LENGTH ? `${reason.slice(0, MAX_REASON_LENGTH - 1)}…` : reason;
}

/** The topic a channel record says it came on (the rule adds it), for the robot's last rejection; cut short. */
export function topicOf(data: unknown): string | null {
  if (typeof data !== 'object' || data === null) return null;
  const topic = (data as Record<string, unknown>).topic;
  return typeof topic === 'string' ? topic.slice(0, 256) : null;
}
