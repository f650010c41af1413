import {
  PreProvisioningHookRequest,
  PROVISIONING_PARAMETERS,
  RobotModel,
  Serial,
  thingNameOf,
  type FactoryRecord,
  type HookRefusal,
  type PreProvisioningHookResponse,
  type RobotId,
} from '../../../schemas/index.js';
import { admit, batchRefusal } from '../../domain/provisioning.js';
import { decide } from '../../domain/robot-decider.js';
import { fold, initialRobotState } from '../../domain/robot-state.js';
import type { AppendRequest, RobotHead } from '../ports.js';
import type { ProvisioningClaims } from './factory-registry.js';
import { assertNever } from '../../../lib/assert-never.js';
import { X509Certificate } from 'node:crypto';

/**
 * The pre-provisioning hook (AWS IoT calls it on every RegisterThing of the fleet provisioning template; the local
 * IoT Core calls the same module): admits a certificate as a registered serial's robot, or refuses with a named
 * reason. IoT itself only tells the robot ACCESS_DENIED, so the reason is returned to the caller (the Lambda logs
 * and counts it; the local broker puts it in its rejection) and kept on the serial's record for `factory status`.
 *
 * Cost: one read (the serial's record and the robot's head in one BatchGetItem) and one transaction per admission;
 * a refusal the record decides costs the read and the best-effort `lastRefusal` write. The batch is never read: the
 * transaction is conditioned on it, and a failed condition returns the batch as it saw it, which names the reason.
 *
 * INVARIANTS
 * - It answers `allowProvisioning: true` only after one transaction recorded the claim (first claim or re-image) and
 *   RobotProvisioned in the robot's log, or for the very certificate already recorded with its event: whatever IoT
 *   does next, the allow-list knows who holds the serial and the robot's log says it was admitted.
 * - Only a claim certificate the factory recorded for the serial's batch is admitted (HOOK_DENIED_WRONG_BATCH), so
 *   one batch's claim cannot spend another's allowance.
 * - The event log keeps its rule of one writer at a time per robot: the append is conditioned on the head's revision
 *   as read, like every other writer's (app/execute-robot-command.ts), and RobotProvisioned's eventId
 *   `provisioned:<certificateId>` makes a retried hook append it once. IoT activates the certificate only after the
 *   hook answers, so the event means "admitted", not "online": the lifecycle stays `provisioning` until the robot
 *   connects (domain/lifecycle.ts).
 * - A claim that lost a race (the record, the head or the batch's counter changed under it) is decided again on a
 *   fresh read, a bounded number of times (IoT waits 5 s at most); past that it throws, IoT answers ACCESS_DENIED and
 *   the robot retries.
 */
export interface HookDependencies {
  /** The factory table and the event log, read and written together. */
  readonly claims: ProvisioningClaims;
  readonly now: () => Date;
  /** Waits between attempts of a contended claim (jittered); tests may pass their own. */
  readonly sleep?: (ms: number) => Promise<void>;
}

export type HookDecision =
  | {
      readonly allow: true;
      readonly serial: string;
      readonly thingName: RobotId;
      readonly claim: 'first' | 'reimage' | 'repeat';
      /** A re-image's previous certificate: to be deactivated and revoked once the new one is in use. */
      readonly supersededCertificateId?: string | undefined;
      readonly attempts: number;
    }
  | {
      readonly allow: false;
      readonly reason: HookRefusal;
      /** What was wrong with the request, for HOOK_DENIED_INVALID_REQUEST. */
      readonly problem?: string | undefined;
      readonly serial?: string | undefined;
      readonly thingName?: RobotId | undefined;
      readonly attempts: number;
    };

export interface HookResult {
  /** The documented hook output, exactly what IoT reads. */
  readonly response: PreProvisioningHookResponse;
  readonly decision: HookDecision;
}

/** A claim lost its race this many times in a row: give up well inside IoT's 5 s. */
export const MAX_CLAIM_ATTEMPTS = 8;

export class ProvisioningContendedError extends Error {
  override readonly name = 'ProvisioningContendedError';
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function preProvisioningHook(deps: HookDependencies, input: unknown): Promise<HookResult> {
  const parsed = parseRequest(input);
  if ('problem' in parsed) return refused({ allow: false, reason: 'HOOK_DENIED_INVALID_REQUEST', problem: parsed.problem, attempts: 0 });
  const { request, serial, model } = parsed;
  const sleep = deps.sleep ?? defaultSleep;
  const thingNameGuess = model === undefined ? undefined : thingNameOf(model, serial);

  for (let attempt = 1; attempt <= MAX_CLAIM_ATTEMPTS; attempt++) {
    const { record, head } = await deps.claims.readClaimState(serial, thingNameGuess);
    const holderOnline = head?.state.presence.status === 'online';
    const admission = admit(record, { serial, model, certificateId: request.certificateId }, { holderOnline });
    if (!admission.allow) {
      if (record) await remember(deps, serial, admission.reason, request.certificateId);
      return refused({ allow: false, reason: admission.reason, serial, thingName: admission.thingName, attempts: attempt });
    }
    const held = record!;
    // A repeat is recorded again in case the first answer's append never happened (the decider skips a certificate
    // the log already has); it names the claim that admitted the certificate.
    const supersededCertificateId = admission.claim === 'repeat' ? held.supersededCertificateIds.at(-1) : admission.supersededCertificateId;
    const append = provisionedAppend(
      deps,
      held,
      head,
      { certificateId: request.certificateId, notAfter: certificateNotAfter(request.certificatePem) },
      admission.claim === 'first' || !supersededCertificateId ? 'first' : 'reimage',
      supersededCertificateId,
    );
    const decision = {
      allow: true as const,
      serial,
      thingName: admission.thingName,
      claim: admission.claim,
      ...(admission.claim === 'reimage' ? { supersededCertificateId } : {}),
      attempts: attempt,
    };
    // The very certificate and claim already admitted, with its event in the log: nothing to write.
    if (admission.claim === 'repeat' && !append && held.claimCertificateId === request.claimCertificateId) return admitted(decision, held);

    const outcome = await deps.claims.commitClaim({
      kind: admission.claim,
      serial,
      batchId: held.batchId,
      thingName: admission.thingName,
      certificateId: request.certificateId,
      claimCertificateId: request.claimCertificateId,
      supersededCertificateId: admission.supersededCertificateId,
      append,
      at: deps.now(),
    });
    switch (outcome.status) {
      case 'committed':
        return admitted(decision, held);
      case 'condition-failed': {
        const reason = outcome.batchFailed ? batchRefusal(outcome.batch, request.claimCertificateId, admission.claim) : undefined;
        if (reason) {
          await remember(deps, serial, reason, request.certificateId);
          return refused({ allow: false, reason, serial, thingName: admission.thingName, attempts: attempt });
        }
        break; // the record changed under us (another claim, a retirement): decide again on a fresh read
      }
      case 'changed':
        // Full jitter: racing claims of one batch spread out instead of colliding again.
        await sleep(Math.random() * Math.min(400, 25 * 2 ** attempt));
        break;
      case 'duplicate':
        break; // another call of the same certificate committed: the next read sees a repeat
      default:
        return assertNever(outcome);
    }
  }
  throw new ProvisioningContendedError(
    `Serial ${serial}: the claim lost ${MAX_CLAIM_ATTEMPTS} races in a row; the robot should retry RegisterThing`,
  );
}

/** RobotProvisioned and the head after it, as the robot's log takes it; undefined when the log already has it. */
function provisionedAppend(
  deps: HookDependencies,
  record: FactoryRecord,
  head: RobotHead | null,
  certificate: { readonly certificateId: string; readonly notAfter: string | undefined },
  claim: 'first' | 'reimage',
  supersededCertificateId: string | undefined,
): AppendRequest | undefined {
  const state = head?.state ?? initialRobotState(record.thingName);
  const at = deps.now().toISOString();
  const events = decide(
    state,
    {
      type: 'RecordProvisioning',
      at,
      serial: record.serial,
      batch: record.batchId,
      certificateId: certificate.certificateId,
      certificateNotAfter: certificate.notAfter,
      claim,
      supersededCertificateId,
    },
    { known: head !== null },
  );
  if (events.length === 0) return undefined;
  return {
    robotId: record.thingName,
    expectedRevision: head?.revision ?? null,
    expectedLastSeq: head?.lastSeq ?? 0,
    events,
    state: fold(state, events),
    previousTelemetry: head?.telemetry ?? null,
    outbox: head?.outbox ?? null,
    recordedAt: at,
  };
}

/**
 * The expiry of the certificate IoT made from the robot's CSR (the hook's `certificatePem`), so the fleet's certificate
 * ages are known from provisioning on. Node's own X.509 parser: no dependency in the hook's bundle, well under a
 * millisecond. A PEM it cannot read leaves the expiry unknown; it never refuses a robot (IoT made the certificate).
 */
export function certificateNotAfter(certificatePem: string): string | undefined {
  try {
    const validTo = new Date(new X509Certificate(certificatePem).validTo);
    return Number.isNaN(validTo.getTime()) ? undefined : validTo.toISOString();
  } catch {
    return undefined;
  }
}

function parseRequest(
  input: unknown,
): { request: PreProvisioningHookRequest; serial: string; model: RobotModel | undefined } | { problem: string } {
  const request = PreProvisioningHookRequest.safeParse(input);
  if (!request.success) {
    return { problem: request.error.issues.map((issue) => `${issue.path.join('.') || '(input)'}: ${issue.message}`).join('; ') };
  }
  const parameters = request.data.parameters;
  const serial = Serial.safeParse(parameters[PROVISIONING_PARAMETERS.serial]);
  if (!serial.success) {
    return { problem: `parameters.${PROVISIONING_PARAMETERS.serial}: ${serial.error.issues[0]?.message ?? 'invalid'}` };
  }
  const modelText = parameters[PROVISIONING_PARAMETERS.model];
  const model = modelText === undefined ? undefined : RobotModel.safeParse(modelText);
  if (model && !model.success) {
    return { problem: `parameters.${PROVISIONING_PARAMETERS.model}: must be one of ${RobotModel.options.join(', ')}` };
  }
  return { request: request.data, serial: serial.data, model: model?.data };
}

function admitted(decision: Extract<HookDecision, { allow: true }>, record: { model: RobotModel; batchId: string }): HookResult {
  return {
    response: {
      allowProvisioning: true,
      parameterOverrides: {
        [PROVISIONING_PARAMETERS.thingName]: decision.thingName,
        [PROVISIONING_PARAMETERS.model]: record.model,
        [PROVISIONING_PARAMETERS.batch]: record.batchId,
      },
    },
    decision,
  };
}

function refused(decision: Extract<HookDecision, { allow: false }>): HookResult {
  return { response: { allowProvisioning: false }, decision };
}

async function remember(deps: HookDependencies, serial: string, reason: HookRefusal, certificateId: string): Promise<void> {
  // Best effort: the refusal stands whether or not the record keeps it (the handler logs every decision).
  await deps.claims.recordRefusal(serial, { reason, certificateId, at: deps.now().toISOString() }).catch(() => undefined);
}

