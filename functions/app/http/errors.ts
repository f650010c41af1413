import type { ApiErrorCode } from '../../../schemas/index.js';
import type { FieldProblem } from '../../platform/validation.js';
import { CommandRejected, type RejectionCode } from '../../domain/robot-decider.js';
import { ConcurrencyExhausted } from '../execute-robot-command.js';
import { IdempotencyKeyReused } from '../idempotency.js';
import { InvalidCursor } from './fleet-queries.js';

/**
 * An answer other than success, shown to the caller as `{ error: { code, message, details } }`. Only these reach the
 * client with their message; anything else is a 500 with a generic message (middy's http-error-handler rule, which
 * http-api.ts applies).
 */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    /** One of schemas/api.ts API_ERROR_CODES (a decider's rejection code passes through as it is). */
    readonly code: ApiErrorCode | RejectionCode,
    message: string,
    readonly details: unknown = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export function invalidRequest(problems: readonly FieldProblem[]): HttpError {
  const fields = [...new Set(problems.map((problem) => problem.field))];
  return new HttpError(400, 'INVALID_REQUEST', `Invalid ${fields.join(', ')}`, problems);
}


const REJECTION_STATUS: Readonly<Record<RejectionCode, number>> = {
  ROBOT_NOT_FOUND: 404,
  ALREADY_FAILED: 409,
  NOT_FAILED: 409,
};

/** Seconds a caller should wait before retrying a command whose robot was too busy to write. */
const BUSY_RETRY_AFTER_SECONDS = 1;

/** The errors of the layers below that have a meaning for the caller; null for anything unexpected (a 500). */
export function toHttpError(error: unknown): HttpError | null {
  if (error instanceof HttpError) return error;
  if (error instanceof InvalidCursor) return invalidRequest([{ field: 'cursor', message: error.message }]);
  if (error instanceof CommandRejected) return new HttpError(REJECTION_STATUS[error.code], error.code, error.message);
  if (error instanceof IdempotencyKeyReused) {
    return new HttpError(422, 'IDEMPOTENCY_KEY_REUSED', error.message, { differs: error.differs, firstRoute: error.firstRoute });
  }
  if (error instanceof ConcurrencyExhausted) {
    return new HttpError(
      503,
      'ROBOT_BUSY',
      'The robot changed too often while we tried to write; retry shortly.',
      null,
      { 'retry-after': String(BUSY_RETRY_AFTER_SECONDS) },
    );
  }
  return null;
}

/** What the caller sees of an unexpected failure: nothing internal, the details go to the log. */
export function internalError(): HttpError {
  return new HttpError(500, 'INTERNAL_ERROR', 'Something went wrong on our side; please retry later.');
}
