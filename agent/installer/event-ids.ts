/**
 * The ids of the robot's update events (UpdateDeferred / Started / Succeeded / Failed). Derived, never random: a
 * report repeated after a crash carries the same id, so the cloud's event log drops the duplicate; a retried
 * execution (a new execution number) is a new event.
 */
export function eventIdFor(jobId: string, executionNumber: number | undefined, what: 'deferred' | 'started' | 'succeeded' | 'failed'): string {
  return `upd-${jobId}-e${executionNumber ?? 0}-${what}`;
}
