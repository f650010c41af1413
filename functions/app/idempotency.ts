import { createHash } from 'node:crypto';
import type { CommandReceipt } from './ports.js';

/**
 * Idempotency-Key as payment APIs treat it.
 *
 * INVARIANTS
 * - A key belongs to one caller on one robot: another caller's key, or the same key on another robot, is another
 *   command. Its receipt lives apart from event ids, so no event id (a robot's agent chooses its own) can take it.
 * - A key counts once: the receipt is written in the same transaction as the command's events, or not at all.
 * - A reuse of the key for the same request (caller, route, robot and body as parsed, so key order and trimmed spaces
 *   do not matter) answers the first answer again and writes nothing; for another request it is refused, naming what
 *   differs. A command that was refused (409, 404) leaves no receipt: a retry is decided afresh.
 */
export interface IdempotentRequest {
  readonly callerId: string;
  readonly key: string;
  /** The route key (`POST /api/v2/robots/{id}/fail`). */
  readonly route: string;
  readonly robotId: string;
  /** Hash of caller, route, robot and canonical body. */
  readonly fingerprint: string;
}

export function idempotentRequest(request: {
  readonly callerId: string;
  readonly key: string;
  readonly route: string;
  readonly robotId: string;
  /** The body as validated (defaults applied, strings trimmed): what the command means, not how it was spelled. */
  readonly body: unknown;
}): IdempotentRequest {
  const { callerId, key, route, robotId, body } = request;
  const fingerprint = createHash('sha256')
    .update(canonicalJson({ callerId, route, robotId, body }))
    .digest('base64url');
  return { callerId, key, route, robotId, fingerprint };
}

/** Raised when a caller sends a key it already used on this robot for another request. */
export class IdempotencyKeyReused extends Error {
  override readonly name = 'IdempotencyKeyReused';
  constructor(
    readonly key: string,
    /** `route` when the key came on another route, else `body`. */
    readonly differs: readonly ('route' | 'body')[],
    readonly firstRoute: string,
  ) {
    super(
      `Idempotency-Key ${key} was already used on this robot for ${firstRoute}` +
        (differs.includes('route') ? '' : ' with another body') +
        '; send a new key for a new request.',
    );
  }
}

/** The first answer when `request` is the one the receipt recorded; otherwise IdempotencyKeyReused. */
export function replayAnswer(receipt: CommandReceipt, request: IdempotentRequest): unknown {
  if (receipt.fingerprint === request.fingerprint) return receipt.answer;
  throw new IdempotencyKeyReused(request.key, receipt.route === request.route ? ['body'] : ['route'], receipt.route);
}

/** JSON with object keys sorted at every level: equal values, equal text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    inner !== null && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner,
  );
}
