import {
  thingNameOf,
  type BatchUsage,
  type FactoryRecord,
  type HookRefusal,
  type RobotId,
  type RobotModel,
} from '../../schemas/index.js';
import { assertNever } from '../../lib/assert-never.js';

/**
 * The pre-provisioning hook's decision: may this certificate be registered as this serial's robot?
 *
 * INVARIANTS
 * - An unknown serial is never admitted; a retired serial is never admitted.
 * - A serial is admitted only under its registered model and only as `<model>-<serial>` (its record's thing name), so
 *   a re-imaged robot comes back as the same thing.
 * - A batch never admits more robots than its allowance, and only through its own claim certificate(s): `admit` plans
 *   the claim from the serial's record alone, and the claim's one transaction is conditioned on the batch (its claim
 *   certificates list the one that asked; a first claim also needs `claimed < allowance`). When that condition fails,
 *   `batchRefusal` names the reason from the batch as the transaction saw it, so the batch is never read beforehand.
 *   A re-image or a repeated request of the same certificate takes no new place: the batch counts robots, not
 *   certificates.
 * - A serial already provisioned is admitted again for a new certificate (a re-image: the robot lost its key) unless
 *   the robot holding the current certificate is online — then the request comes from a second robot claiming its
 *   serial and is refused as HOOK_DENIED_ALREADY_CLAIMED. The certificate it replaces is named, to be deactivated.
 * Pure: the record, the batch and whether the holder is online come in as data.
 */
export interface AdmissionRequest {
  readonly serial: string;
  /** The model the robot says it is, when it says. */
  readonly model?: RobotModel | undefined;
  /** The certificate IoT created from the robot's CSR, the one to register. */
  readonly certificateId: string;
}

export interface AdmissionContext {
  /** Whether the robot holding the serial's current certificate is connected now. */
  readonly holderOnline: boolean;
}

export type ClaimKind = 'first' | 'reimage' | 'repeat';

export type Admission =
  | {
      readonly allow: true;
      readonly thingName: RobotId;
      /**
       * - `first`: the serial's first claim, which takes a place in its batch;
       * - `reimage`: a new certificate for a provisioned serial; `supersededCertificateId` is to be deactivated;
       * - `repeat`: the certificate already admitted asks again (IoT or the robot retried): nothing to claim.
       */
      readonly claim: ClaimKind;
      readonly supersededCertificateId?: string | undefined;
    }
  | { readonly allow: false; readonly reason: HookRefusal; readonly thingName?: RobotId | undefined };

/** Plans the claim from the serial's record; the batch's conditions are the transaction's (see `batchRefusal`). */
export function admit(
  record: FactoryRecord | undefined,
  request: AdmissionRequest,
  context: AdmissionContext = { holderOnline: false },
): Admission {
  if (!record || record.serial !== request.serial) return { allow: false, reason: 'HOOK_DENIED_UNKNOWN_SERIAL' };
  const thingName = thingNameOf(record.model, record.serial);
  const refuse = (reason: HookRefusal): Admission => ({ allow: false, reason, thingName });
  switch (record.state) {
    case 'retired':
      return refuse('HOOK_DENIED_RETIRED');
    case 'registered':
      if (request.model !== undefined && request.model !== record.model) return refuse('HOOK_DENIED_MODEL_MISMATCH');
      return { allow: true, thingName, claim: 'first' };
    case 'provisioned':
      if (request.model !== undefined && request.model !== record.model) return refuse('HOOK_DENIED_MODEL_MISMATCH');
      if (record.certificateId === request.certificateId) return { allow: true, thingName, claim: 'repeat' };
      if (context.holderOnline) return refuse('HOOK_DENIED_ALREADY_CLAIMED');
      return { allow: true, thingName, claim: 'reimage', supersededCertificateId: record.certificateId };
    default:
      return assertNever(record.state);
  }
}

/** What a claim needs of its batch: its claim certificates and, for a first claim, a place. */
export interface BatchClaimView extends BatchUsage {
  readonly claimCertificateIds: readonly string[];
}

/**
 * Why the batch refuses a claim by `claimCertificateId`, or undefined when it does not (then the transaction failed
 * on something else: a race, decided again). A batch that cannot be read is a half-written registration: no place
 * can be proven free. The wrong claim certificate is named before the count: another batch's claim learns nothing
 * of this batch's places.
 */
export function batchRefusal(
  batch: BatchClaimView | undefined,
  claimCertificateId: string,
  claim: ClaimKind,
): HookRefusal | undefined {
  if (!batch) return 'HOOK_DENIED_BATCH_EXHAUSTED';
  if (!batch.claimCertificateIds.includes(claimCertificateId)) return 'HOOK_DENIED_WRONG_BATCH';
  if (claim === 'first' && batch.claimed >= batch.allowance) return 'HOOK_DENIED_BATCH_EXHAUSTED';
  return undefined;
}
