import type { FactoryBatch, FactoryRecord, FactoryRefusal, RobotId, RobotModel } from '../../../schemas/index.js';
import type { ClaimKind } from '../../domain/provisioning.js';
import type { AppendRequest, RobotHead } from '../ports.js';

/**
 * The factory's allow-list (DynamoDB in AWS and locally: functions/adapters/dynamo-factory-registry.ts).
 *
 * INVARIANTS (held by the store's conditional writes, not by its callers)
 * - A serial is registered once, in one batch, for one model; registering it again changes nothing.
 * - A batch's `claimed` never exceeds its allowance (claims are written through `ProvisioningClaims` below).
 * - A retired serial stays retired.
 */
export interface FactoryRegistry {
  /** Registers one serial in a batch (created on its first serial, with the model). Idempotent. */
  register(registration: SerialRegistration): Promise<RegisterOutcome>;
  /**
   * Records a claim certificate as the batch's (the batch is created, for the model, if no serial is registered yet):
   * the hook admits claims only from a batch's own claim certificates. Idempotent.
   */
  addClaimCertificate(batchId: string, model: RobotModel, certificateId: string, at: Date): Promise<ClaimCertificateOutcome>;
  /** Fixes the batch's allowance (refused below the robots it already admitted). */
  setAllowance(batchId: string, allowance: number, at: Date): Promise<AllowanceOutcome>;
  /** Strongly consistent reads. */
  readSerial(serial: string): Promise<FactoryRecord | undefined>;
  readBatch(batchId: string): Promise<FactoryBatch | undefined>;
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

export type ClaimCertificateOutcome =
  | { readonly status: 'added' | 'unchanged'; readonly batch: FactoryBatch }
  /** The batch exists for another model: nothing written. */
  | { readonly status: 'model-conflict'; readonly batch: FactoryBatch };

export type AllowanceOutcome =
  | { readonly status: 'set'; readonly batch: FactoryBatch }
  | { readonly status: 'unknown-batch' }
  | { readonly status: 'below-claimed'; readonly batch: FactoryBatch };

export type RetireOutcome =
  | { readonly status: 'retired'; readonly record: FactoryRecord }
  | { readonly status: 'already-retired'; readonly record: FactoryRecord }
  | { readonly status: 'unknown-serial' };

/**
 * The pre-provisioning hook's store: the factory table and the fleet's event log, read and written together so an
 * admission costs one read and one transaction (functions/adapters/dynamo-factory-registry.ts
 * `DynamoProvisioningClaims`).
 *
 * INVARIANTS
 * - `commitClaim` writes all of it or nothing: the serial's record, the batch's counter (first claim only) and
 *   RobotProvisioned with the robot's new head. It is conditioned on the record being as read (state, certificate,
 *   thing name), on the batch listing the claim certificate (and, for a first claim, `claimed < allowance`), on the
 *   head's revision being as read (the event log's one-writer-at-a-time rule) and on the event's id being new.
 * - When a condition fails, the outcome carries the record and batch as the transaction saw them (DynamoDB's
 *   ReturnValuesOnConditionCheckFailure), so the refusal's reason needs no further read.
 */
export interface ProvisioningClaims {
  /**
   * The serial's record and its robot's head, strongly consistent, in one request when the thing name guessed from the
   * robot's own `Model` parameter is right (else a second read of the head).
   */
  readClaimState(serial: string, thingNameGuess: RobotId | undefined): Promise<ClaimSnapshot>;
  commitClaim(commit: ClaimCommit): Promise<ClaimCommitOutcome>;
  /** Keeps the newest refusal on a known serial's record (best effort: the refusal stands either way). */
  recordRefusal(serial: string, refusal: FactoryRefusal): Promise<void>;
}

export interface ClaimSnapshot {
  readonly record: FactoryRecord | undefined;
  /** The head of the robot `record.thingName`; null when it has none (or there is no record). */
  readonly head: RobotHead | null;
}

export interface ClaimCommit {
  readonly kind: ClaimKind;
  readonly serial: string;
  readonly batchId: string;
  readonly thingName: RobotId;
  readonly certificateId: string;
  readonly claimCertificateId: string;
  /** For a re-image: the certificate the record holds now, replaced and listed as superseded. */
  readonly supersededCertificateId?: string | undefined;
  /** RobotProvisioned and the head after it; absent when the robot's log already holds it (a repeat). */
  readonly append?: AppendRequest | undefined;
  readonly at: Date;
}

export type ClaimCommitOutcome =
  | { readonly status: 'committed' }
  /**
   * The record or the batch failed its condition: each as the transaction saw it (undefined: no such item), and
   * which of the two failed.
   */
  | {
      readonly status: 'condition-failed';
      readonly recordFailed: boolean;
      readonly batchFailed: boolean;
      readonly record?: FactoryRecord | undefined;
      readonly batch?: FactoryBatch | undefined;
    }
  /** The robot's head moved, or another transaction held an item at that moment: read again and decide again. */
  | { readonly status: 'changed'; readonly conflict: boolean }
  /** RobotProvisioned of this certificate is already in the log: another call committed it; read again. */
  | { readonly status: 'duplicate' };
