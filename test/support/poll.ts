/**
 * The one default for waiting on a condition in tests: 15 s, checked every 25 ms.
 *
 * - `expect.poll(() => value, { message }).toBe(...)` reads it from vitest.config.ts (`test.expect.poll`);
 * - `vi.waitFor(() => { expect(...) }, POLL)` has no configurable default (vitest's own is 1 s / 50 ms), so it is
 *   given this one explicitly.
 *
 * Pass a longer `timeout` (`{ ...POLL, timeout: 60_000 }`) only where a wait legitimately needs it: a process
 * starting, DynamoDB Local restarting. Name what is awaited in the assertion's message, so a timeout says what never
 * happened.
 */
export const POLL = { timeout: 15_000, interval: 25 } as const;
