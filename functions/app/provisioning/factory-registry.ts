import type { FactoryBatch, FactoryRecord, FactoryRefusal, RobotId, RobotModel } from '../../../schemas/index.js';

/**
 * The factory's allow-list (DynamoDB in AWS and locally: functions/adapters/dynamo-factory-registry.ts).
 *
 * INVARIANTS (held by the store's conditional writes, not by its callers)
 * - A serial is registered once, in one batch, for one model; registering it again changes nothing.
 * - A batch's `claimed` never exceeds its allowance: a first claim writes the serial and the counter in one
 *   transaction conditioned on `claimed < allowance`, so no number of concurrent claims can overshoot.
 * - A claim applies only to the record it was decided on (state and certificate unchanged), else it reports
 *   `changed` and the caller reads and decides again.
 * - A retired serial stays retired.
 */
export interface FactoryRegistry {
  /** Registers one serial in a batch (created on its first serial, with the model). Idempotent. */
  register(registration: SerialRegistration): Promise<RegisterOutcome>;
  /** Fixes the batch's allowance (refused below the robots it already admitted). */
  setAllowance(batchId: string, allowance: number, at: Date): Promise<AllowanceOutcome>;
  /** Strongly consistent reads. */
  readSerial(serial: string): Promise<FactoryRecord | undefined>;
  readBatch(batchId: string): Promise<FactoryBatch | undefined>;
  /** Applies an admission (domain/provisioning.ts) to the record it was decided on. */
  claim(claim: Claim): Promise<ClaimOutcome>;
  /** Keeps the newest refusal on a known serial's record (best effort: the refusal stands either way). */
  recordRefusal(serial: string, refusal: FactoryRefusal): Promise<void>;
  retire(serial: string, at: Date): Promise<RetireOutcome>;
  /** The batch's records, in serial order, a page at a time. */
  listBatch(batchId: string): AsyncGenerator<FactoryRecord>;
}

export interface SerialRegistration {
  readonly batchId: string;
  readonly model: RobotModel;
  readonly serial: string;
  readonly at: Date;
}

export type RegisterOutcome =
  | { readonly status: 'registered'; readonly record: FactoryRecord }
  /** Already in this batch for this model: nothing written. */
  | { readonly status: 'unchanged'; readonly record: FactoryRecord }
  /** Registered elsewhere (another batch or model): nothing written, the existing record returned. */
  | { readonly status: 'conflict'; readonly record: FactoryRecord; readonly problem: string }
  /** The batch exists for another model. */
  | { readonly status: 'model-conflict'; readonly batch: FactoryBatch };

export type AllowanceOutcome =
  | { readonly status: 'set'; readonly batch: FactoryBatch }
  | { readonly status: 'unknown-batch' }
  | { readonly status: 'below-claimed'; readonly batch: FactoryBatch };

export interface Claim {
  readonly serial: string;
  readonly batchId: string;
  readonly thingName: RobotId;
  readonly kind: 'first' | 'reimage';
  readonly certificateId: string;
  readonly claimCertificateId: string;
  /** For a re-image: the certificate the record holds now, replaced and listed as superseded. */
  readonly supersededCertificateId?: string | undefined;
  readonly at: Date;
}

export type ClaimOutcome =
  | { readonly status: 'claimed'; readonly record: FactoryRecord }
  /** The batch's allowance is used up (the transaction's condition on the counter failed). */
  | { readonly status: 'batch-exhausted' }
  /** The record changed since it was read (another claim, a retirement): read again and decide again. */
  | { readonly status: 'changed' };

export type RetireOutcome =
  | { readonly status: 'retired'; readonly record: FactoryRecord }
  | { readonly status: 'already-retired'; readonly record: FactoryRecord }
  | { readonly status: 'unknown-serial' };
