import { Serial, type FactoryBatch, type RobotModel } from '../../../schemas/index.js';
import { settleConcurrently } from '../../platform/concurrency.js';
import type { FactoryRegistry } from './factory-registry.js';

/**
 * The factory's registration of a batch: a list of serials (typed, or a CSV from the line) onto the allow-list,
 * idempotently — a serial already in the batch is left as it is, so a half-finished run is simply run again.
 * Every serial is checked before anything is written: one bad line stops the whole run with each problem named.
 */
export class SerialListError extends Error {
  override readonly name = 'SerialListError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

export interface SerialEntry {
  readonly serial: string;
  /** Where it came from, for error messages: `--serials item 3`, `serials.csv line 12`. */
  readonly source: string;
}

/** `a,b,c` from the command line. */
export function serialsFromList(text: string): SerialEntry[] {
  return text
    .split(',')
    .map((serial, index) => ({ serial: serial.trim(), source: `--serials item ${index + 1}` }));
}

/**
 * A CSV with one serial per line in its first column, or in the column headed `serial`; a `model` column, if any,
 * must agree with the batch's model. Blank lines and `#` comments are skipped.
 */
export function serialsFromCsv(text: string, fileName: string, model: RobotModel): SerialEntry[] {
  const lines = text.split(/\r?\n/);
  const problems: string[] = [];
  const entries: SerialEntry[] = [];
  let serialColumn = 0;
  let modelColumn = -1;
  let sawHeader = false;
  lines.forEach((line, index) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const cells = trimmed.split(',').map((cell) => cell.trim().replace(/^"(.*)"$/, '$1'));
    if (!sawHeader && entries.length === 0) {
      sawHeader = true;
      const lower = cells.map((cell) => cell.toLowerCase());
      if (lower.includes('serial')) {
        serialColumn = lower.indexOf('serial');
        modelColumn = lower.indexOf('model');
        return;
      }
    }
    const source = `${fileName} line ${index + 1}`;
    const serial = cells[serialColumn] ?? '';
    if (modelColumn >= 0 && cells[modelColumn] && cells[modelColumn] !== model) {
      problems.push(`${source}: model ${cells[modelColumn]} differs from the batch's model ${model}`);
    }
    entries.push({ serial, source });
  });
  if (problems.length > 0) throw new SerialListError(problems);
  return entries;
}

/** Checks every serial; duplicates are reported, not registered twice. */
export function validateSerials(entries: readonly SerialEntry[]): string[] {
  const problems: string[] = [];
  const seen = new Map<string, string>();
  for (const { serial, source } of entries) {
    const parsed = Serial.safeParse(serial);
    if (!parsed.success) problems.push(`${source}: serial "${serial}" ${parsed.error.issues[0]?.message ?? 'is invalid'}`);
    else if (seen.has(serial)) problems.push(`${source}: serial ${serial} is listed twice (first at ${seen.get(serial)})`);
    else seen.set(serial, source);
  }
  if (entries.length === 0) problems.push('no serials given');
  if (problems.length > 0) throw new SerialListError(problems);
  return [...seen.keys()];
}

export interface RegisterProgress {
  readonly done: number;
  readonly total: number;
}

export interface RegisterReport {
  readonly registered: readonly string[];
  readonly unchanged: readonly string[];
  /** Serials registered elsewhere, each with the problem; nothing was written for them. */
  readonly conflicts: readonly { readonly serial: string; readonly problem: string }[];
  /** Serials whose write failed (DynamoDB's error); running again retries them. */
  readonly failed: readonly { readonly serial: string; readonly error: string }[];
  readonly batch: FactoryBatch | undefined;
}

/** How many registrations are in flight at once: enough to fill a line's batch quickly, not to throttle. */
const CONCURRENCY = 8;

export async function registerSerials(
  registry: FactoryRegistry,
  request: {
    readonly batchId: string;
    readonly model: RobotModel;
    readonly serials: readonly string[];
    /** Fixes the batch's allowance; absent, it follows the number of registered serials. */
    readonly allowance?: number | undefined;
    /** Claim certificates to record as the batch's (what `factory bundle` does for the claim it packs). */
    readonly claimCertificateIds?: readonly string[] | undefined;
    readonly now: () => Date;
    readonly onProgress?: (progress: RegisterProgress) => void;
  },
): Promise<RegisterReport> {
  const existing = await registry.readBatch(request.batchId);
  if (existing && existing.model !== request.model) {
    throw new SerialListError([`batch ${request.batchId} is a batch of ${existing.model}, not ${request.model}`]);
  }
  if (existing && request.allowance !== undefined && request.allowance < existing.claimed) {
    throw new SerialListError([
      `allowance ${request.allowance} is below the ${existing.claimed} robots batch ${request.batchId} already admitted`,
    ]);
  }
  const registered: string[] = [];
  const unchanged: string[] = [];
  const conflicts: { serial: string; problem: string }[] = [];
  const failed: { serial: string; error: string }[] = [];
  let done = 0;
  const results = await settleConcurrently(request.serials, CONCURRENCY, async (serial) => {
    const outcome = await registry.register({ batchId: request.batchId, model: request.model, serial, at: request.now() });
    request.onProgress?.({ done: ++done, total: request.serials.length });
    return outcome;
  });
  results.forEach((result, index) => {
    const serial = request.serials[index]!;
    if (result.status === 'rejected') {
      failed.push({ serial, error: (result.reason as Error).message ?? String(result.reason) });
      return;
    }
    const outcome = result.value;
    if (outcome.status === 'registered') registered.push(serial);
    else if (outcome.status === 'unchanged') unchanged.push(serial);
    else if (outcome.status === 'conflict') conflicts.push({ serial, problem: outcome.problem });
    else conflicts.push({ serial, problem: `batch ${request.batchId} is a batch of ${outcome.batch.model}` });
  });
  for (const certificateId of request.claimCertificateIds ?? []) {
    const added = await registry.addClaimCertificate(request.batchId, request.model, certificateId, request.now());
    if (added.status === 'model-conflict') throw new SerialListError([`batch ${request.batchId} is a batch of ${added.batch.model}, not ${request.model}`]);
  }
  if (request.allowance !== undefined) {
    const set = await registry.setAllowance(request.batchId, request.allowance, request.now());
    if (set.status === 'below-claimed') {
      throw new SerialListError([
        `allowance ${request.allowance} is below the ${set.batch.claimed} robots batch ${request.batchId} already admitted`,
      ]);
    }
    if (set.status === 'unknown-batch') throw new SerialListError([`batch ${request.batchId} has no serials: nothing to set an allowance on`]);
  }
  return { registered, unchanged, conflicts, failed, batch: await registry.readBatch(request.batchId) };
}
