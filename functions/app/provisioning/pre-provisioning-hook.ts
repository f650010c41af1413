import {
  PreProvisioningHookRequest,
  PROVISIONING_PARAMETERS,
  RobotModel,
  Serial,
  type HookRefusal,
  type PreProvisioningHookResponse,
  type RobotId,
} from '../../../schemas/index.js';
import { admit } from '../../domain/provisioning.js';
import type { EventLog } from '../ports.js';
import type { FactoryRegistry } from './factory-registry.js';
import { assertNever } from '../../../lib/assert-never.js';

/**
 * The pre-provisioning hook (AWS IoT calls it on every RegisterThing of the fleet provisioning template; the local
 * IoT Core calls the same module): admits a certificate as a registered serial's robot, or refuses with a named
 * reason. IoT itself only tells the robot ACCESS_DENIED, so the reason is returned to the caller (the Lambda logs
 * and counts it; the local broker puts it in its rejection) and kept on the serial's record for `factory status`.
 *
 * INVARIANTS
 * - It answers `allowProvisioning: true` only after the registry recorded the claim (first claim or re-image), or
 *   for the very certificate already recorded: whatever IoT does next, the allow-list knows who holds the serial.
 * - A claim that lost a race is decided again on a fresh read, a bounded number of times (IoT waits 5 s at most);
 *   past that it throws, IoT answers ACCESS_DENIED and the robot retries.
 */
export interface HolderPresence {
  /** Whether the robot named so is connected now, by the fleet's own record of presence. */
  isOnline(thingName: RobotId): Promise<boolean>;
}

export interface HookDependencies {
  readonly registry: FactoryRegistry;
  readonly presence: HolderPresence;
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

  for (let attempt = 1; attempt <= MAX_CLAIM_ATTEMPTS; attempt++) {
    const record = await deps.registry.readSerial(serial);
    const batch = record ? await deps.registry.readBatch(record.batchId) : undefined;
    const holderOnline =
      record?.state === 'provisioned' && record.certificateId !== request.certificateId
        ? await deps.presence.isOnline(record.thingName)
        : false;
    const admission = admit(record, batch, { serial, model, certificateId: request.certificateId }, { holderOnline });

    if (!admission.allow) {
      if (record) await remember(deps, serial, admission.reason, request.certificateId);
      return refused({ allow: false, reason: admission.reason, serial, thingName: admission.thingName, attempts: attempt });
    }
    if (admission.claim === 'repeat') return admitted({ allow: true, serial, thingName: admission.thingName, claim: 'repeat', attempts: attempt }, record!);

    const outcome = await deps.registry.claim({
      serial,
      batchId: record!.batchId,
      thingName: admission.thingName,
      kind: admission.claim,
      certificateId: request.certificateId,
      claimCertificateId: request.claimCertificateId,
      supersededCertificateId: admission.supersededCertificateId,
      at: deps.now(),
    });
    switch (outcome.status) {
      case 'claimed':
        return admitted(
          {
            allow: true,
            serial,
            thingName: admission.thingName,
            claim: admission.claim,
            supersededCertificateId: admission.supersededCertificateId,
            attempts: attempt,
          },
          outcome.record,
        );
      case 'batch-exhausted':
        await remember(deps, serial, 'HOOK_DENIED_BATCH_EXHAUSTED', request.certificateId);
        return refused({ allow: false, reason: 'HOOK_DENIED_BATCH_EXHAUSTED', serial, thingName: admission.thingName, attempts: attempt });
      case 'changed':
        // Full jitter: racing claims of one batch spread out instead of colliding again.
        await sleep(Math.random() * Math.min(400, 25 * 2 ** attempt));
        break;
      default:
        return assertNever(outcome);
    }
  }
  throw new ProvisioningContendedError(
    `Serial ${serial}: the claim lost ${MAX_CLAIM_ATTEMPTS} races in a row; the robot should retry RegisterThing`,
  );
}

/** Presence as the event log's head folds it (the `RobotConnected`/`RobotDisconnected` facts). */
export function presenceFromEventLog(log: Pick<EventLog, 'readHead'>): HolderPresence {
  return {
    async isOnline(thingName) {
      const head = await log.readHead(thingName);
      return head?.state.presence.status === 'online';
    },
  };
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
  await deps.registry.recordRefusal(serial, { reason, certificateId, at: deps.now().toISOString() }).catch(() => undefined);
}

