import { z } from 'zod';
import { RobotId } from '../../../schemas/index.js';
import type { Caller } from './auth.js';
import { fieldProblems, type FieldProblem } from '../../platform/validation.js';
import { HttpError, invalidRequest } from './errors.js';

/** What a route sees of a request: already routed and authenticated, not yet validated. */
export interface ApiRequest {
  /** The route it matched, as API Gateway names it (`POST /api/v2/robots/{id}/fail`). */
  readonly routeKey: string;
  readonly caller: Caller;
  readonly pathParameters: Readonly<Record<string, string | undefined>>;
  readonly query: Readonly<Record<string, string | undefined>>;
  /** Header names in lower case, as API Gateway sends them. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** The body as text (already decoded when the gateway sent it base64-encoded). */
  readonly body: string | undefined;
}

export function parseQuery<S extends z.ZodType>(request: ApiRequest, schema: S): z.infer<S> {
  const parsed = schema.safeParse(request.query);
  if (!parsed.success) throw invalidRequest(fieldProblems(parsed.error, 'query'));
  return parsed.data;
}

/** Routes without parameters still refuse unknown ones, so a typo (`?stauts=online`) is an error, not ignored. */
const NoQuery = z.object({}).strict();

/** A 400 naming every query parameter sent to a route that takes none. */
export function noQuery(request: ApiRequest): void {
  parseQuery(request, NoQuery);
}

/** The JSON body against `schema`; an empty body counts as `{}` so a command with only optional fields needs none. */
export function parseBody<S extends z.ZodType>(request: ApiRequest, schema: S): z.infer<S> {
  let value: unknown = {};
  if (request.body !== undefined && request.body.trim() !== '') {
    try {
      value = JSON.parse(request.body);
    } catch {
      throw invalidRequest([{ field: 'body', message: 'is not valid JSON' }]);
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw invalidRequest(fieldProblems(parsed.error, 'body'));
  return parsed.data;
}

export function robotIdParameter(request: ApiRequest): string {
  const parsed = RobotId.safeParse(request.pathParameters.id);
  if (!parsed.success) throw invalidRequest(fieldProblems(parsed.error, 'id').map((problem) => ({ ...problem, field: 'id' })));
  return parsed.data;
}

/**
 * Long enough not to collide by chance within one caller's requests, and plain enough to log and to put in a key of
 * the event log (no `#`, the log's separator). A UUID is ideal.
 */
export const IdempotencyKey = z
  .string()
  .min(8, 'must be at least 8 characters (a UUID is ideal)')
  .max(128, 'must be at most 128 characters')
  .regex(/^[A-Za-z0-9:_.-]+$/, 'letters, digits and : _ . - only (a UUID is ideal)');

export function idempotencyKey(request: ApiRequest): string | undefined {
  const value = request.headers['idempotency-key'];
  if (value === undefined) return undefined;
  const parsed = IdempotencyKey.safeParse(value);
  if (!parsed.success) {
    throw invalidRequest(parsed.error.issues.map((issue) => ({ field: 'Idempotency-Key', message: issue.message })));
  }
  return parsed.data;
}

/**
 * Runs every check of a request (path, headers, query, body) and reports all their bad fields in one 400, rather
 * than only the first part's.
 */
export function allValid<const T extends readonly (() => unknown)[]>(...checks: T): { -readonly [K in keyof T]: ReturnType<T[K]> } {
  const problems: FieldProblem[] = [];
  const results = checks.map((check) => {
    try {
      return check();
    } catch (error) {
      if (!(error instanceof HttpError && error.status === 400 && Array.isArray(error.details))) throw error;
      problems.push(...(error.details as FieldProblem[]));
      return undefined;
    }
  });
  if (problems.length > 0) throw invalidRequest(problems);
  return results as { -readonly [K in keyof T]: ReturnType<T[K]> };
}
