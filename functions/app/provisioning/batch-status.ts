import type { FactoryBatch, FactoryRecord } from '../../../schemas/index.js';
import { settleConcurrently } from '../../platform/concurrency.js';
import type { EventLog } from '../ports.js';
import type { FactoryRegistry } from './factory-registry.js';

/**
 * `factory status --batch B`: where each serial of a batch is, from the two records that know — the factory's
 * allow-list (registered, provisioned with which certificate and when, retired, the hook's last refusal) and the
 * robot's event log head (online now, RobotProvisioned, the failures its agent reported with ProvisioningFailed).
 *
 * A serial's `stage` is the furthest it got: `retired`; `online` (connected now); `provisioned` (admitted, not online
 * now); `failed` (never admitted, and the hook refused it); `registered` (waiting for its robot). `lastFailure` is the
 * newest of the hook's refusal and the robot's own report, whatever the stage (a robot that retried its way through
 * still shows what it met).
 */
export const SERIAL_STAGES = ['registered', 'failed', 'provisioned', 'online', 'retired'] as const;
export type SerialStage = (typeof SERIAL_STAGES)[number];

export interface SerialStatus {
  readonly serial: string;
  readonly thingName: string;
  readonly stage: SerialStage;
  readonly certificateId: string | null;
  readonly provisionedAt: string | null;
  /** Whether the robot is connected now: null when the event log was not read. */
  readonly online: boolean | null;
  /** Since when it is online or offline, by its log. */
  readonly presenceSince: string | null;
  readonly lastFailure: { readonly source: 'hook' | 'robot'; readonly reason: string; readonly at: string; readonly detail?: string | undefined } | null;
  /** How many first-boot failures the robot reported. */
  readonly robotFailures: number;
}

export interface BatchStatus {
  readonly batch: FactoryBatch;
  readonly serials: readonly SerialStatus[];
  readonly counts: Readonly<Record<SerialStage, number>>;
}

export interface BatchStatusOptions {
  /** The fleet's event log, for presence and the robots' reports; absent, `online` is null. */
  readonly log?: Pick<EventLog, 'readHead'> | undefined;
  readonly onProgress?: (progress: { readonly done: number; readonly total: number }) => void;
  readonly concurrency?: number;
}

export async function batchStatus(registry: FactoryRegistry, batchId: string, options: BatchStatusOptions = {}): Promise<BatchStatus | undefined> {
  const batch = await registry.readBatch(batchId);
  if (!batch) return undefined;
  const records: FactoryRecord[] = [];
  for await (const record of registry.listBatch(batchId)) records.push(record);
  let done = 0;
  const settled = await settleConcurrently(records, options.concurrency ?? 16, async (record) => {
    const head = options.log ? await options.log.readHead(record.thingName) : undefined;
    options.onProgress?.({ done: ++done, total: records.length });
    return statusOf(record, head === undefined ? undefined : (head?.state ?? null));
  });
  const serials = settled.map((result) => {
    if (result.status === 'rejected') throw result.reason;
    return result.value;
  });
  const counts = Object.fromEntries(SERIAL_STAGES.map((stage) => [stage, 0])) as Record<SerialStage, number>;
  for (const serial of serials) counts[serial.stage]++;
  return { batch, serials, counts };
}

type HeadState = NonNullable<Awaited<ReturnType<EventLog['readHead']>>>['state'];

/** One serial's status from its factory record and its robot's folded state (undefined: not read; null: no log yet). */
export function statusOf(record: FactoryRecord, state: HeadState | null | undefined): SerialStatus {
  const online = state === undefined ? null : state?.presence.status === 'online';
  const hook = record.lastRefusal ? { source: 'hook' as const, reason: record.lastRefusal.reason, at: record.lastRefusal.at } : null;
  const reported = state?.provisioningFailures?.last;
  const robot = reported ? { source: 'robot' as const, reason: reported.reason, at: reported.at, ...(reported.detail ? { detail: reported.detail } : {}) } : null;
  const lastFailure = hook && robot ? (Date.parse(robot.at) > Date.parse(hook.at) ? robot : hook) : (hook ?? robot);
  const stage: SerialStage =
    record.state === 'retired'
      ? 'retired'
      : online
        ? 'online'
        : record.state === 'provisioned'
          ? 'provisioned'
          : lastFailure
            ? 'failed'
            : 'registered';
  return {
    serial: record.serial,
    thingName: record.thingName,
    stage,
    certificateId: record.certificateId ?? null,
    provisionedAt: record.provisionedAt ?? null,
    online,
    presenceSince: state?.presence.since ?? null,
    lastFailure,
    robotFailures: state?.provisioningFailures?.count ?? 0,
  };
}
