import type { ApiClient, ApiFailure, Permissions } from '../contracts.js';
import type { DiscoverOutcome, Role } from '../../../schemas/index.js';

/**
 * Bulk actions on many robots: "report now" in chunks of at most DISCOVER_CHUNK ids per call, "mark failed" and
 * "recover" one call per robot with at most BULK_CONCURRENCY in flight.
 *
 * Invariants: every robot gets exactly one result (ok, or the error that call gave); results are reported as they
 * come; once `signal` is aborted no new call starts (those in flight still report).
 */
export const DISCOVER_CHUNK = 100;
export const BULK_CONCURRENCY = 8;

/** What a discover's per-robot outcome (schemas/api.ts DISCOVER_OUTCOMES) means to the person who asked. */
export const OUTCOME_TEXT: Record<DiscoverOutcome, string> = {
  asked: 'asked to report now',
  failed: 'could not be asked (publishing the command failed)',
  offline: 'offline: not asked',
  'not-found': 'not in the fleet',
};

export type BulkKind = 'report-now' | 'mark-failed' | 'recover';

export interface BulkResult {
  readonly robotId: string;
  readonly ok: boolean;
  /** The error's message, or a note on success (e.g. how many of a chunk were asked). */
  readonly message: string;
}

/**
 * What each role may do, as the API's route table (functions/app/http/routes.ts) allows it: operators watch; engineers
 * and admins may also ask robots to report now (a command to the robots), fail and recover them, and create, pause,
 * resume, cancel and roll back deployments.
 */
export function permissionsFor(role: Role | null): Permissions {
  const engineer = role === 'engineer' || role === 'admin';
  return { markFailed: engineer, recover: engineer, reportNow: engineer, deploy: engineer };
}

/** The message of anything an API call threw: an ApiFailure's "403 FORBIDDEN: …", else the error's message. */
export function describeFailure(error: unknown): string {
  if (isApiFailure(error)) return `${error.status} ${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message;
  return String(error);
}

export function isApiFailure(error: unknown): error is ApiFailure {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as ApiFailure).status === 'number' &&
    typeof (error as ApiFailure).code === 'string' &&
    typeof (error as ApiFailure).message === 'string'
  );
}

export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Runs `worker` for every item with at most `concurrency` at once, calling `onResult` as each settles. Resolves when
 * every started call settled; items not started because of `signal` get no result.
 */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  worker: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length && !signal?.aborted) {
      const item = items[next++] as T;
      await worker(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
}

export async function runBulk(
  api: ApiClient,
  kind: BulkKind,
  robotIds: readonly string[],
  options: { reason?: string; signal?: AbortSignal; onResult: (results: readonly BulkResult[]) => void },
): Promise<void> {
  const { onResult, signal } = options;
  if (kind === 'report-now') {
    const chunks = chunk(robotIds, DISCOVER_CHUNK);
    await runPool(chunks, 2, async (ids) => {
      try {
        const answer = await api.discover(ids);
        const outcomes = new Map((answer.robots ?? []).map((robot) => [robot.robotId, robot.outcome]));
        const note = `asked ${answer.asked} of ${ids.length} in this batch${answer.failed ? `, ${answer.failed} could not be asked` : ''}`;
        onResult(
          ids.map((robotId) => {
            const outcome = outcomes.get(robotId);
            if (outcome === undefined) return { robotId, ok: true, message: note };
            return { robotId, ok: outcome === 'asked', message: OUTCOME_TEXT[outcome] };
          }),
        );
      } catch (error) {
        const message = describeFailure(error);
        onResult(ids.map((robotId) => ({ robotId, ok: false, message })));
      }
    }, signal);
    return;
  }
  const reason = options.reason ?? '';
  await runPool(robotIds, BULK_CONCURRENCY, async (robotId) => {
    try {
      const result = kind === 'mark-failed' ? await api.markFailed(robotId, reason) : await api.recover(robotId, reason || undefined);
      onResult([{ robotId, ok: true, message: `now ${result.robot.lifecycle}` }]);
    } catch (error) {
      onResult([{ robotId, ok: false, message: describeFailure(error) }]);
    }
  }, signal);
}
