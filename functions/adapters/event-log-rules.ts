import { DomainEvent } from '../../schemas/index.js';
import type { AppendRequest } from '../app/ports.js';

/**
 * The rules every EventLog implementation checks before it writes or reads, so the DynamoDB log and the in-memory
 * one used by unit tests reject the same requests with the same messages.
 */

/**
 * DynamoDB takes at most 100 items in one transaction and an append writes two per event (the event and its eventId
 * marker) plus the head, and a person's command its Idempotency-Key receipt: 2 × 49 + 2 = 100. A command decides a
 * handful of events; more means a bug upstream, not a big command.
 */
export const MAX_EVENTS_PER_APPEND = 49;

export const MAX_PAGE_SIZE = 1000;

/** A request that can never succeed, whatever the state of the log: a caller's bug, never retried. */
export class InvalidEventLogRequest extends Error {
  override readonly name = 'InvalidEventLogRequest';
}

export function validateAppend(request: AppendRequest): void {
  const fail = (field: string, problem: string) => {
    throw new InvalidEventLogRequest(`append for robot ${JSON.stringify(request.robotId)}: ${field} ${problem}`);
  };
  if (typeof request.robotId !== 'string' || request.robotId.length === 0) fail('robotId', 'must be a non-empty string');
  if (request.expectedRevision !== null && !isNonNegativeInteger(request.expectedRevision)) {
    fail('expectedRevision', 'must be null or an integer ≥ 0');
  }
  if (!isNonNegativeInteger(request.expectedLastSeq)) fail('expectedLastSeq', 'must be an integer ≥ 0');
  if (request.expectedRevision === null && request.expectedLastSeq !== 0) {
    fail('expectedLastSeq', 'must be 0 when expectedRevision is null (a robot without a head has no events)');
  }
  if (request.events.length > MAX_EVENTS_PER_APPEND) {
    fail('events', `has ${request.events.length} events; one append takes at most ${MAX_EVENTS_PER_APPEND}`);
  }
  const seen = new Set<string>();
  request.events.forEach((event, index) => {
    if (event.robotId !== request.robotId) {
      fail(`events[${index}].robotId`, `is ${JSON.stringify(event.robotId)}, not the robot being appended to`);
    }
    if (seen.has(event.eventId)) fail(`events[${index}].eventId`, `repeats ${JSON.stringify(event.eventId)} within one append`);
    seen.add(event.eventId);
    // The log must never hold what its readers (projector, broadcaster, replay) would reject as poison.
    const parsed = DomainEvent.safeParse(event);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      fail(`events[${index}].${issue?.path.join('.') ?? ''}`, `is not a valid ${event.type} event: ${issue?.message ?? ''}`);
    }
  });
}

export function pageOptions(options: { afterSeq?: number; limit?: number }): { afterSeq: number; limit: number } {
  const afterSeq = options.afterSeq ?? 0;
  const limit = options.limit ?? 100;
  if (!isNonNegativeInteger(afterSeq)) throw new InvalidEventLogRequest(`readEvents: afterSeq must be an integer ≥ 0`);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
    throw new InvalidEventLogRequest(`readEvents: limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  return { afterSeq, limit };
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}
