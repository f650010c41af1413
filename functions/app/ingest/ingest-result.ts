import type { z } from 'zod';
import type { CommandOutcome } from '../execute-robot-command.js';
import { fieldProblems, type FieldProblem } from '../../platform/validation.js';
import type { EventLog } from '../ports.js';

/** What an ingest use case needs: the event log and a clock. */
export interface IngestDeps {
  readonly log: EventLog;
  readonly now: () => Date;
}

/** What became of one message from a robot (or about one, for presence). */
export type IngestResult =
  /** Rejected: can never succeed, so it is reported and dropped rather than retried. */
  | { readonly status: 'invalid'; readonly robotId: string | null; readonly problems: readonly FieldProblem[] }
  /** A lifecycle event of a client that is not a robot (a dashboard, an admin tool): not ours to record. */
  | { readonly status: 'ignored'; readonly clientId: string }
  | { readonly status: 'recorded'; readonly robotId: string; readonly outcome: CommandOutcome };

/** Names the whole message when an issue has no field (a payload that is not an object). */
export const WHOLE_PAYLOAD = '(payload)';

export function invalid(robotId: string | null, problems: readonly FieldProblem[]): IngestResult {
  return { status: 'invalid', robotId, problems };
}

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
