import { z } from 'zod';
import { RobotId, RobotModel } from './robot-id.js';
import type { ThingPolicyStatement } from './thing-policy.js';
import { STAGE_PATTERN } from './topics.js';

/**
 * Zero-touch provisioning by claim (issue 11): the factory's allow-list of serials, its batches, and AWS IoT's
 * pre-provisioning hook contract (https://docs.aws.amazon.com/iot/latest/developerguide/pre-provisioning-hook.html).
 *
 * A robot boots with its batch's claim certificate, asks for a certificate from a CSR, then calls RegisterThing with
 * the template parameters below. IoT calls the hook before the template runs; the hook admits only a serial the
 * factory registered, under the thing name `<model>-<serial>`.
 */

const isoTimestamp = z.iso.datetime({ offset: true });

/**
 * A hardware serial as the factory registered it (the Raspberry Pi's SoC serial, or a label): the part of a robot id
 * after `<model>-` (schemas/robot-id.ts), so every admitted serial makes a valid thing name.
 */
export const SERIAL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const Serial = z
  .string()
  .regex(SERIAL_PATTERN, 'must be 1–64 letters, digits, "_" or "-", starting with a letter or digit');
export type Serial = z.infer<typeof Serial>;

/** A production batch: one model, one claim certificate, one allowance. */
export const BATCH_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const BatchId = z
  .string()
  .regex(BATCH_ID_PATTERN, 'must be 1–64 letters, digits, "_", "." or "-", starting with a letter or digit');
export type BatchId = z.infer<typeof BatchId>;

/** The thing name (= robot id = MQTT client id) of a serial: `<model>-<serial>`, the RobotId format. */
export function thingNameOf(model: RobotModel, serial: string): RobotId {
  return RobotId.parse(`${model}-${serial}`);
}

/**
 * Where a serial is in its life:
 * - `registered`: on the allow-list, never claimed;
 * - `provisioned`: the hook admitted a certificate for it (its thing is `<model>-<serial>`); admitted again on a
 *   re-image, under the same thing name, and the certificate it held is listed to be deactivated and revoked;
 * - `retired`: never admitted again, whatever certificate asks.
 */
export const FACTORY_STATES = ['registered', 'provisioned', 'retired'] as const;
export const FactoryState = z.enum(FACTORY_STATES);
export type FactoryState = z.infer<typeof FactoryState>;

/**
 * Why the hook refused. IoT answers a refused RegisterThing with ACCESS_DENIED only, so the reason is logged,
 * counted (metric `ProvisioningRefused<reason>`) and kept on the serial's record (`lastRefusal`), where
 * `factory status` shows it; the local IoT Core also puts it in the rejection's errorMessage.
 */
export const HOOK_REFUSALS = [
  /** The serial is not on the factory's allow-list. */
  'HOOK_DENIED_UNKNOWN_SERIAL',
  /** The factory retired the serial. */
  'HOOK_DENIED_RETIRED',
  /**
   * Another certificate holds the serial and its robot is online right now: a second robot (a cloned SD card with a
   * serial override, a spoofed serial) and not a re-image — a re-imaged robot has lost its old key, so its old
   * certificate cannot be connected.
   */
  'HOOK_DENIED_ALREADY_CLAIMED',
  /** The batch has admitted as many robots as its allowance: its claim certificate registers no more. */
  'HOOK_DENIED_BATCH_EXHAUSTED',
  /**
   * The claim certificate that asked is not one the factory recorded for the serial's batch (`factory bundle`
   * records it): another batch's claim cannot spend this batch's allowance, nor re-image its robots.
   */
  'HOOK_DENIED_WRONG_BATCH',
  /** The robot says it is another model than the factory registered for the serial. */
  'HOOK_DENIED_MODEL_MISMATCH',
  /** The RegisterThing parameters lack a valid serial (or model): nothing to look up. */
  'HOOK_DENIED_INVALID_REQUEST',
] as const;
export const HookRefusal = z.enum(HOOK_REFUSALS);
export type HookRefusal = z.infer<typeof HookRefusal>;

/**
 * Why a robot's first boot failed, as its agent names it (issue 11, item 3): the hook's refusals and the failures of
 * the exchange itself. The agent's state machine (agent/core/provisioning.ts) decides which one; the cloud records it
 * as `ProvisioningFailed` once the robot can talk. A reason the cloud does not know yet (a newer agent) is still
 * recorded: the event's schema takes any upper-case name, this list says what each known one means.
 */
export const PROVISIONING_FAILURE_REASONS = [
  /** The claim certificate was refused (by the broker at connect, or by the provisioning API without a hook reason). */
  'CLAIM_REJECTED',
  ...HOOK_REFUSALS,
  /** RegisterThing names a template the account does not have. */
  'TEMPLATE_NOT_FOUND',
  /** The TLS handshake failed: the CA file does not verify the endpoint. */
  'TLS_CA_MISMATCH',
  /** The robot's clock is before any plausible time, or TLS says a certificate is not yet / no longer valid. */
  'CLOCK_SKEW',
  /** Nothing answered: DNS, refused, no route. */
  'ENDPOINT_UNREACHABLE',
  /** The provisioning service failed, throttled or did not reply in time. */
  'SERVICE_UNAVAILABLE',
  /** The ownership token expired (or was already used) before RegisterThing: the agent starts again from the CSR. */
  'TOKEN_EXPIRED',
  /** The robot's own certificate, once registered, is refused or unusable. */
  'CERTIFICATE_REJECTED',
] as const;
export type KnownProvisioningFailureReason = (typeof PROVISIONING_FAILURE_REASONS)[number];
/** A failure reason on the wire: one of the known ones, or a newer agent's upper-case name. */
export const ProvisioningFailureReason = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'must be an upper-case reason name such as HOOK_DENIED_RETIRED (PROVISIONING_FAILURE_REASONS)');
export type ProvisioningFailureReason = z.infer<typeof ProvisioningFailureReason>;

/** A refusal kept on the serial's record, the newest only. */
export const FactoryRefusal = z
  .object({ reason: HookRefusal, certificateId: z.string(), at: isoTimestamp })
  .strict();
export type FactoryRefusal = z.infer<typeof FactoryRefusal>;

/** One serial on the factory's allow-list. */
export const FactoryRecord = z
  .object({
    serial: Serial,
    model: RobotModel,
    batchId: BatchId,
    state: FactoryState,
    /** `<model>-<serial>`, fixed at registration: a re-image provisions under the same name. */
    thingName: RobotId,
    /** The certificate the hook last admitted for this serial (absent before the first claim). */
    certificateId: z.string().optional(),
    /** The batch's claim certificate that made the last claim. */
    claimCertificateId: z.string().optional(),
    /**
     * Certificates this serial held before a re-image (oldest first): each must end deactivated and revoked once
     * the new one is in use. Kept, not removed, so the thing's history shows every certificate it had.
     */
    supersededCertificateIds: z.array(z.string()).default([]),
    /** How many times the hook admitted a new certificate for the serial (first claim and re-images). */
    claims: z.number().int().nonnegative().default(0),
    lastRefusal: FactoryRefusal.optional(),
    registeredAt: isoTimestamp,
    /** When the hook last admitted a certificate for it (first claim or re-image). */
    provisionedAt: isoTimestamp.optional(),
    retiredAt: isoTimestamp.optional(),
    updatedAt: isoTimestamp,
  })
  .strict();
export type FactoryRecord = z.infer<typeof FactoryRecord>;

/**
 * A batch: the serials of one model flashed with one claim certificate. `allowance` is the most robots its claims
 * may admit: the number of serials registered in it, unless the factory fixed it (`allowanceFixed`).
 * INVARIANT: claimed ≤ allowance (the claim's transaction is conditioned on it); claimed never goes down, not even
 * when a serial is retired: a claim used is used.
 */
export const FactoryBatch = z
  .object({
    batchId: BatchId,
    model: RobotModel,
    allowance: z.number().int().nonnegative(),
    allowanceFixed: z.boolean(),
    registered: z.number().int().nonnegative(),
    claimed: z.number().int().nonnegative(),
    /**
     * The certificate ids of the batch's claim certificate(s) (`factory bundle` records the one it packs; an operator's
     * claim from AWS is recorded the same way). The hook admits a claim only from one of these.
     */
    claimCertificateIds: z.array(z.string()).default([]),
    createdAt: isoTimestamp,
    updatedAt: isoTimestamp,
  })
  .strict();
export type FactoryBatch = z.infer<typeof FactoryBatch>;

/** What the admission decision needs of a batch. */
export interface BatchUsage {
  readonly allowance: number;
  readonly claimed: number;
}

/**
 * The provisioning template's parameters the robot sends in RegisterThing (`parameters`), and the one the hook
 * adds (`parameterOverrides`): the template names the thing from `ThingName`, so the naming rule lives here alone.
 */
export const PROVISIONING_PARAMETERS = {
  serial: 'SerialNumber',
  model: 'Model',
  thingName: 'ThingName',
  batch: 'Batch',
} as const;

/** What AWS IoT sends the pre-provisioning hook Lambda (documented input). */
export const PreProvisioningHookRequest = z.object({
  claimCertificateId: z.string().min(1),
  certificateId: z.string().min(1),
  certificatePem: z.string().min(1),
  templateArn: z.string().min(1),
  clientId: z.string(),
  parameters: z.record(z.string(), z.string()).default({}),
});
export type PreProvisioningHookRequest = z.infer<typeof PreProvisioningHookRequest>;

/** What the hook answers (documented output): provisioning proceeds only on `allowProvisioning: true`. */
export const PreProvisioningHookResponse = z
  .object({
    allowProvisioning: z.boolean(),
    parameterOverrides: z.record(z.string(), z.string()).optional(),
  })
  .strict();
export type PreProvisioningHookResponse = z.infer<typeof PreProvisioningHookResponse>;

/**
 * The fleet provisioning template of a stage: `heartbeat-<stage>-claim` (template names are unique per account and
 * region, at most 36 of `[0-9A-Za-z_-]`: a 20-character stage just fits). Without a stage (the local cloud, one
 * IoT Core per run): `heartbeat-claim`. The agent's config and the claim policy name the template through this.
 */
export const PROVISIONING_TEMPLATE_NAME_PATTERN = /^[0-9A-Za-z_-]{1,36}$/;
export function provisioningTemplateName(stage?: string): string {
  const name = stage === undefined ? 'heartbeat-claim' : `heartbeat-${stage}-claim`;
  if (stage !== undefined && !STAGE_PATTERN.test(stage)) {
    throw new Error(`stage ${JSON.stringify(stage)} is not a stage name (lower-case letters, digits and single inner hyphens, at most 20)`);
  }
  if (!PROVISIONING_TEMPLATE_NAME_PATTERN.test(name)) throw new Error(`${name} cannot name a provisioning template`);
  return name;
}

/** One MQTT API of fleet provisioning: the robot publishes the request, and hears back on accepted or rejected. */
export interface ProvisioningExchange {
  readonly request: string;
  readonly accepted: string;
  readonly rejected: string;
}

/**
 * The reserved topics of fleet provisioning by claim (AWS IoT's MQTT API, JSON payloads), the only topics a claim
 * certificate may use: CreateCertificateFromCsr (the key is made on the robot and never leaves it; `certificates/
 * create/json`, where AWS would make the key, is deliberately not among them) and RegisterThing of `templateName`.
 */
export function provisioningTopics(templateName: string): {
  readonly createCertificateFromCsr: ProvisioningExchange;
  readonly registerThing: ProvisioningExchange;
} {
  if (!PROVISIONING_TEMPLATE_NAME_PATTERN.test(templateName)) {
    throw new Error(`template name ${JSON.stringify(templateName)} must be 1–36 letters, digits, "_" or "-"`);
  }
  const exchange = (request: string): ProvisioningExchange => ({
    request,
    accepted: `${request}/accepted`,
    rejected: `${request}/rejected`,
  });
  return {
    createCertificateFromCsr: exchange('$aws/certificates/create-from-csr/json'),
    registerThing: exchange(`$aws/provisioning-templates/${templateName}/provision/json`),
  };
}

/**
 * The MQTT client id a robot uses while it holds only the claim certificate: `claim-<serial>`. Never its thing name:
 * IoT Core drops the older of two connections with one client id, so a claim certificate (the same in every robot of
 * a batch, and on every SD card) allowed to connect as `lekiwi-LK0001` could knock that robot offline at will. The
 * claim policy allows only this prefix.
 */
export const CLAIM_CLIENT_ID_PREFIX = 'claim-';
export function claimClientId(serial: string): string {
  return `${CLAIM_CLIENT_ID_PREFIX}${Serial.parse(serial)}`;
}

/**
 * The claim certificate's policy, as plain data in the thing policy's shape (schemas/thing-policy.ts): infra renders
 * it into the IoT policy document, and the local IoT Core can enforce the same statements (`isAllowed(action,
 * clientId, topic, claimPolicy(name))`: no statement names a thing, so the client id stands in). Connect under the
 * claim prefix; publish the two requests; subscribe to and receive their accepted and rejected replies. Nothing
 * else: no telemetry, no commands, no other robot's topics, no `$aws/certificates/create/json`.
 */
export function claimPolicy(templateName: string): readonly ThingPolicyStatement[] {
  const { createCertificateFromCsr: csr, registerThing: register } = provisioningTopics(templateName);
  const replies = [csr.accepted, csr.rejected, register.accepted, register.rejected];
  return [
    { sid: 'ConnectAsClaim', action: 'Connect', resources: [`${CLAIM_CLIENT_ID_PREFIX}*`] },
    { sid: 'PublishProvisioningRequests', action: 'Publish', resources: [csr.request, register.request] },
    { sid: 'SubscribeProvisioningReplies', action: 'Subscribe', resources: replies },
    { sid: 'ReceiveProvisioningReplies', action: 'Receive', resources: replies },
  ];
}
