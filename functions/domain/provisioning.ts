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
 * - A batch never admits more robots than its allowance: a serial's first claim needs `claimed < allowance`, and the
 *   registry's claim writes the serial and the batch's counter in one transaction conditioned on the same, so two
 *   racing first claims cannot both take the last place. A re-image or a repeated request of the same certificate
 *   takes no new place: the batch counts robots, not certificates.
 * - A serial already provisioned is admitted again for a new certificate (a re-image: the robot lost its key) unless
 *   the robot holding the current certificate is online — then the request comes from a second robot claiming its
 *   serial and is refused as HOOK_DENIED_ALREADY_CLAIMED. The certificate it replaces is named, to be deactivated.
 * Pure: the record, the batch's usage and whether the holder is online come in as data.
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

export type Admission =
  | {
      readonly allow: true;
      readonly thingName: RobotId;
      /**
       * - `first`: the serial's first claim, which takes a place in its batch;
       * - `reimage`: a new certificate for a provisioned serial; `supersededCertificateId` is to be deactivated;
       * - `repeat`: the certificate already admitted asks again (IoT or the robot retried): nothing to write.
       */
      readonly claim: 'first' | 'reimage' | 'repeat';
      readonly supersededCertificateId?: string | undefined;
    }
  | { readonly allow: false; readonly reason: HookRefusal; readonly thingName?: RobotId | undefined };

export function admit(
  record: FactoryRecord | undefined,
  batch: BatchUsage | undefined,
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
      // A registered serial without its batch is a half-written registration: no place can be proven free.
      if (!batch || batch.claimed >= batch.allowance) return refuse('HOOK_DENIED_BATCH_EXHAUSTED');
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

