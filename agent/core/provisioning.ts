/**
 * The agent's first boot (issue 11, item 3): fleet provisioning by claim as a pure state machine. The driver (the MQTT
 * wiring) feeds it what happened — a reply from CreateCertificateFromCsr or RegisterThing, a connection failure, a
 * timeout — with the clock and a random source, and it answers with the record to persist (if any) and what to do
 * next. It reads no file, opens no socket and keeps no timer.
 *
 * Steps, each persisted (agent/adapters/provisioning-store.ts) BEFORE the driver acts on the next decision, so a power
 * cut at any point resumes from the last one written:
 *
 *   unprovisioned ──generate key + CSR──▶ key-generated ──CreateCertificateFromCsr accepted──▶ certificate-issued
 *        ──RegisterThing accepted──▶ registered ──connected with its own certificate──▶ provisioned
 *
 * and back from certificate-issued to key-generated when the ownership token has expired (or the cloud no longer knows
 * it): the same key, a new CSR request, a new certificate and token.
 *
 * INVARIANTS
 * - The private key never leaves the robot: no state, event or decision here carries it (only the CSR, which holds the
 *   public key); the store keeps it in its own 0600 file.
 * - Success is never reported while unprovisioned: `done` is decided only from the `provisioned` step, and that step is
 *   reached only by a `connected` event with the robot's own certificate while `registered`.
 * - No fallback to the claim key for normal operation: once `registered`, every decision uses the robot's own
 *   certificate; a failure there retries or stops, it never goes back to the claim credentials.
 * - Every failure is one named `ProvisioningFailureReason`, each with a fixed policy (retry with backoff, or stop) and
 *   exit code (sysexits.h, like agent/core/connection-failure.ts).
 * - One certificate is in use: the record names exactly one certificate at a time; a new CSR request replaces the one
 *   before it in the record before RegisterThing is ever sent for it.
 */

import { assertNever } from '../../lib/assert-never.js';
import {
  HOOK_REFUSALS,
  type HookRefusal,
  type KnownProvisioningFailureReason,
  PROVISIONING_FAILURE_REASONS,
  PROVISIONING_PARAMETERS,
  Serial,
  thingNameOf,
} from '../../schemas/provisioning.js';
import type { RobotModel } from '../../schemas/robot-id.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { EXIT_CONFIG, EXIT_UNAVAILABLE, type ConnectionProblem } from './connection-failure.js';

// ---------------------------------------------------------------------------------------------------------------
// The persisted record

export const PROVISIONING_STEPS = ['unprovisioned', 'key-generated', 'certificate-issued', 'registered', 'provisioned'] as const;
export type ProvisioningStep = (typeof PROVISIONING_STEPS)[number];
export function isProvisioningStep(value: string): value is ProvisioningStep {
  return (PROVISIONING_STEPS as readonly string[]).includes(value);
}

/** The certificate CreateCertificateFromCsr issued, and the token RegisterThing needs to prove it is ours. */
export interface IssuedCertificate {
  readonly certificateId: string;
  readonly certificatePem: string;
  readonly ownershipToken: string;
  /** When the accepted reply arrived (ms since the epoch, the robot's clock). */
  readonly tokenIssuedAt: number;
}

/** What is on disk. The private key is not in it: it is in its own file, written before `key-generated` is. */
export type ProvisioningRecord =
  | { readonly step: 'unprovisioned' }
  | { readonly step: 'key-generated'; readonly csrPem: string }
  | ({ readonly step: 'certificate-issued'; readonly csrPem: string } & IssuedCertificate)
  | {
      readonly step: 'registered';
      readonly csrPem: string;
      readonly certificateId: string;
      readonly certificatePem: string;
      readonly thingName: string;
    }
  | {
      readonly step: 'provisioned';
      readonly certificateId: string;
      readonly certificatePem: string;
      readonly thingName: string;
      readonly provisionedAt: number;
    };

export const UNPROVISIONED: ProvisioningRecord = Object.freeze({ step: 'unprovisioned' });

/** True only once the robot has connected with its own certificate: the one answer to "may the agent say it is up?". */
export function isProvisioned(record: ProvisioningRecord): record is Extract<ProvisioningRecord, { step: 'provisioned' }> {
  return record.step === 'provisioned';
}

/**
 * Whether the agent must run its first boot before it may start as the robot: a provisioning under way (any step
 * between `unprovisioned` and `provisioned`) always resumes; a fresh record means a first boot only when the robot has
 * no certificate of its own (a robot set up by hand with `npm run cert` keeps using that one); a provisioned record
 * never provisions again (a re-image wipes the record with the rest of the state).
 */
export function needsFirstBoot(record: ProvisioningRecord, ownCertificateExists: boolean): boolean {
  switch (record.step) {
    case 'unprovisioned':
      return !ownCertificateExists;
    case 'key-generated':
    case 'certificate-issued':
    case 'registered':
      return true;
    case 'provisioned':
      return false;
    default:
      return assertNever(record);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Failure reasons

/** The named reasons, defined once with the event that carries them (schemas/provisioning.ts). */
export { PROVISIONING_FAILURE_REASONS };
export type ProvisioningFailureReason = KnownProvisioningFailureReason;

export interface FailurePolicy {
  /** `retry`: wait (backoff with jitter) and try again, up to `maxAttempts`; `stop`: exit now, nothing will change by retrying. */
  readonly action: 'retry' | 'stop';
  readonly exitCode: number;
}

/** What each reason means for the agent: retry or stop, and the exit code when it gives up. */
export function failurePolicy(reason: ProvisioningFailureReason): FailurePolicy {
  switch (reason) {
    case 'CLAIM_REJECTED':
    case 'HOOK_DENIED_UNKNOWN_SERIAL':
    case 'HOOK_DENIED_RETIRED':
    case 'HOOK_DENIED_BATCH_EXHAUSTED':
    case 'HOOK_DENIED_WRONG_BATCH':
    case 'HOOK_DENIED_MODEL_MISMATCH':
    case 'HOOK_DENIED_INVALID_REQUEST':
    case 'TEMPLATE_NOT_FOUND':
    case 'TLS_CA_MISMATCH':
      return { action: 'stop', exitCode: EXIT_CONFIG };
    // Another robot online under this serial may be this robot's own stale session from before a re-image: IoT drops
    // it after 1.5 keep-alives, so a few retries tell the two cases apart.
    case 'HOOK_DENIED_ALREADY_CLAIMED':
    case 'CLOCK_SKEW':
    case 'CERTIFICATE_REJECTED':
      return { action: 'retry', exitCode: EXIT_CONFIG };
    case 'ENDPOINT_UNREACHABLE':
    case 'SERVICE_UNAVAILABLE':
    case 'TOKEN_EXPIRED':
      return { action: 'retry', exitCode: EXIT_UNAVAILABLE };
    default:
      return assertNever(reason);
  }
}

/** AWS's rejected payload on `…/rejected` (documented: statusCode, errorCode, errorMessage). */
export interface ProvisioningRejection {
  readonly statusCode: number;
  readonly errorCode: string;
  readonly errorMessage: string;
}

const HOOK_REASON = new RegExp(`\\b(${HOOK_REFUSALS.join('|')})\\b`);

/**
 * The reason behind a rejected CreateCertificateFromCsr or RegisterThing. AWS answers a hook's refusal with
 * ACCESS_DENIED and no reason; the local IoT Core names the hook's reason (schemas/provisioning.ts HOOK_REFUSALS) in
 * errorMessage, which wins when present.
 */
export function reasonOfRejection(request: 'csr' | 'register', rejection: ProvisioningRejection): ProvisioningFailureReason {
  const { statusCode, errorCode, errorMessage } = rejection;
  const hook = HOOK_REASON.exec(errorMessage)?.[1] ?? HOOK_REASON.exec(errorCode)?.[1];
  if (hook !== undefined) return hook as HookRefusal;
  const text = `${errorCode} ${errorMessage}`;
  if (request === 'register' && /ownership ?token|certificateOwnershipToken|token/i.test(text) && statusCode < 500) {
    return 'TOKEN_EXPIRED';
  }
  if (statusCode === 404 || /not ?found/i.test(errorCode) || (request === 'register' && /template/i.test(text) && statusCode < 500)) {
    return 'TEMPLATE_NOT_FOUND';
  }
  if (statusCode === 429 || statusCode >= 500 || /throttl|internal|unavailable/i.test(errorCode)) return 'SERVICE_UNAVAILABLE';
  return 'CLAIM_REJECTED';
}

const CLOCK_TEXT = /NOT_YET_VALID|CERT(?:IFICATE)?_EXPIRED|not yet valid|has expired|certificate expired/i;

/**
 * The reason behind a failed connection: with the claim credentials (`claim`) or with the robot's own certificate
 * (`own`), classified first by agent/core/connection-failure.ts.
 */
export function reasonOfConnectionFailure(
  credentials: 'claim' | 'own',
  problem: ConnectionProblem,
  message: string,
): ProvisioningFailureReason {
  if (CLOCK_TEXT.test(message)) return 'CLOCK_SKEW';
  switch (problem) {
    case 'tls':
      return 'TLS_CA_MISMATCH';
    case 'credentials':
    case 'rejected':
      return credentials === 'claim' ? 'CLAIM_REJECTED' : 'CERTIFICATE_REJECTED';
    case 'unreachable':
    case 'unknown':
      return 'ENDPOINT_UNREACHABLE';
    default:
      return assertNever(problem);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Events and decisions

export type ProvisioningEvent =
  /** The store wrote the new key (0600) and made its CSR. */
  | { readonly type: 'key-generated'; readonly csrPem: string }
  | {
      readonly type: 'csr-accepted';
      readonly certificateId: string;
      readonly certificatePem: string;
      readonly certificateOwnershipToken: string;
    }
  | { readonly type: 'csr-rejected'; readonly rejection: ProvisioningRejection }
  | { readonly type: 'register-accepted'; readonly thingName: string }
  | { readonly type: 'register-rejected'; readonly rejection: ProvisioningRejection }
  /** No reply to the request in flight within the driver's timeout. */
  | { readonly type: 'timeout'; readonly request: 'csr' | 'register' }
  | {
      readonly type: 'connection-failed';
      readonly credentials: 'claim' | 'own';
      readonly problem: ConnectionProblem;
      readonly message: string;
    }
  /** The robot connected with its own certificate (CONNACK as its thing name). */
  | { readonly type: 'connected' };

export interface ProvisioningFailure {
  readonly reason: ProvisioningFailureReason;
  /** What happened, for the log: AWS's errorCode/errorMessage or the SDK's error text. */
  readonly detail: string;
}

export type ProvisioningDecision =
  /** Generate a key (store it 0600) and its CSR, then feed `key-generated`. */
  | { readonly kind: 'generate-key' }
  /** Connected with the claim credentials, publish CreateCertificateFromCsr with this CSR. */
  | { readonly kind: 'request-certificate'; readonly csrPem: string }
  /** Connected with the claim credentials, publish RegisterThing. */
  | {
      readonly kind: 'register-thing';
      readonly certificateOwnershipToken: string;
      readonly parameters: Readonly<Record<string, string>>;
    }
  /** Drop the claim connection; connect with the robot's own key and this certificate as `thingName`. */
  | { readonly kind: 'connect-own'; readonly certificatePem: string; readonly thingName: string }
  /** Wait, then call `proceed`. */
  | { readonly kind: 'wait'; readonly ms: number; readonly failure: ProvisioningFailure }
  /** Log the reason, report it when possible, exit with `exitCode`. */
  | { readonly kind: 'give-up'; readonly failure: ProvisioningFailure; readonly exitCode: number }
  /** Provisioned: run the agent with the robot's own certificate. */
  | { readonly kind: 'done'; readonly thingName: string; readonly certificateId: string };

export interface ProvisioningOptions {
  /** RegisterThing's template parameters (schemas/provisioning.ts PROVISIONING_PARAMETERS: serial, model, batch). */
  readonly parameters: Readonly<Record<string, string>>;
  readonly backoff: BackoffOptions;
  /** Consecutive failures after which a `retry` reason gives up too (so systemd restarts the agent and the journal shows why). */
  readonly maxAttempts: number;
  /**
   * How long an ownership token is trusted before RegisterThing is not even tried and the CSR is sent again. AWS does
   * not document the lifetime in the MQTT API reference; 5 minutes is the conservative figure used here (the local
   * IoT Core keeps tokens an hour), and a `register-rejected` that names the token restarts from the CSR anyway.
   */
  readonly tokenLifetimeMs: number;
  /** A clock before this (ms since the epoch) is not set yet (a Pi has no RTC): CLOCK_SKEW, wait for NTP. */
  readonly clockFloorMs: number;
}

export const DEFAULT_TOKEN_LIFETIME_MS = 5 * 60_000;

/**
 * RegisterThing's parameters for a robot (schemas/provisioning.ts PROVISIONING_PARAMETERS: serial, model, batch; the
 * thing name is not among them, the hook adds it as a parameterOverride), and the thing name the template will give
 * it, for the CSR's subject.
 */
export function registerThingParameters(robot: { readonly serial: string; readonly model: RobotModel; readonly batch: string }): {
  readonly parameters: Readonly<Record<string, string>>;
  readonly thingName: string;
} {
  const serial = Serial.parse(robot.serial);
  const thingName = thingNameOf(robot.model, serial);
  return {
    parameters: {
      [PROVISIONING_PARAMETERS.serial]: serial,
      [PROVISIONING_PARAMETERS.model]: robot.model,
      [PROVISIONING_PARAMETERS.batch]: robot.batch,
    },
    thingName,
  };
}
/** 2025-01-01T00:00:00Z: no robot of this fleet was built before it. */
export const DEFAULT_CLOCK_FLOOR_MS = Date.UTC(2025, 0, 1);

/** The persisted record and what this run of the agent knows (lost on restart, on purpose). */
export interface ProvisioningMachine {
  readonly record: ProvisioningRecord;
  /** Consecutive failures since the last progress (a step forward resets it). */
  readonly failures: number;
  readonly lastFailure?: ProvisioningFailure;
}

export interface Transition {
  readonly machine: ProvisioningMachine;
  /** The record to write (atomically) BEFORE acting on `decision`; absent when the record did not change. */
  readonly persist?: ProvisioningRecord;
  readonly decision: ProvisioningDecision;
}

/** The machine of a run that just read `record` from disk (a first boot reads UNPROVISIONED). */
export function resume(record: ProvisioningRecord): ProvisioningMachine {
  return { record, failures: 0 };
}

/**
 * What to do next from the machine as it is: at start (`start`), after each `wait` (`proceed`) and after each event
 * (`step`). A `certificate-issued` record whose ownership token is stale goes back to `key-generated` first (and that
 * is persisted), so the driver never sends RegisterThing with a token that has expired.
 */
function settle(machine: ProvisioningMachine, now: number, options: ProvisioningOptions): Transition {
  const { record } = machine;
  if (record.step === 'provisioned') {
    return { machine, decision: { kind: 'done', thingName: record.thingName, certificateId: record.certificateId } };
  }
  if (now < options.clockFloorMs) {
    // A clock that is not set makes every certificate look not yet valid, and every token look fresh or stale at
    // random: wait for NTP rather than fail TLS or trust a token.
    const failure: ProvisioningFailure = { reason: 'CLOCK_SKEW', detail: `the clock reads ${new Date(now).toISOString()}` };
    return { machine, decision: { kind: 'wait', ms: options.backoff.baseMs, failure } };
  }
  switch (record.step) {
    case 'unprovisioned':
      return { machine, decision: { kind: 'generate-key' } };
    case 'key-generated':
      return { machine, decision: { kind: 'request-certificate', csrPem: record.csrPem } };
    case 'certificate-issued': {
      if (tokenExpired(record, now, options)) {
        const back: ProvisioningRecord = { step: 'key-generated', csrPem: record.csrPem };
        const next: ProvisioningMachine = { ...machine, record: back };
        return { machine: next, persist: back, decision: { kind: 'request-certificate', csrPem: back.csrPem } };
      }
      const decision = { kind: 'register-thing', certificateOwnershipToken: record.ownershipToken, parameters: options.parameters } as const;
      return { machine, decision };
    }
    case 'registered':
      return { machine, decision: { kind: 'connect-own', certificatePem: record.certificatePem, thingName: record.thingName } };
    default:
      return assertNever(record);
  }
}

function tokenExpired(issued: IssuedCertificate, now: number, options: ProvisioningOptions): boolean {
  // A token from the future means the clock moved back (NTP after a boot at 1970): it cannot be trusted either.
  return now - issued.tokenIssuedAt >= options.tokenLifetimeMs || now < issued.tokenIssuedAt;
}

/** Where a run starts, from the record it read from disk (a first boot reads UNPROVISIONED). */
export function start(record: ProvisioningRecord, now: number, options: ProvisioningOptions): Transition {
  return settle(resume(record), now, options);
}

/** After a `wait` has passed: the next decision. */
export function proceed(machine: ProvisioningMachine, now: number, options: ProvisioningOptions): Transition {
  return settle(machine, now, options);
}

/** What an event does to the machine. `random` is the backoff's jitter source ([0, 1), like Math.random). */
export function step(
  machine: ProvisioningMachine,
  event: ProvisioningEvent,
  now: number,
  options: ProvisioningOptions,
  random: () => number = Math.random,
): Transition {
  const { record } = machine;
  const advance = (next: ProvisioningRecord): Transition => {
    const settled = settle({ record: next, failures: 0 }, now, options);
    return { ...settled, persist: settled.persist ?? next };
  };
  const fail = (reason: ProvisioningFailureReason, detail: string, fallback?: ProvisioningRecord): Transition =>
    failed(machine, { reason, detail }, options, random, now, fallback);
  const unexpected = (): Transition => settle(machine, now, options);

  switch (event.type) {
    case 'key-generated':
      // Only a run that asked for a key takes one: a late event never replaces the key of a CSR already sent.
      if (record.step !== 'unprovisioned') return unexpected();
      return advance({ step: 'key-generated', csrPem: requirePem(event.csrPem, 'CERTIFICATE REQUEST') });
    case 'csr-accepted':
      if (record.step !== 'key-generated') return unexpected();
      return advance({
        step: 'certificate-issued',
        csrPem: record.csrPem,
        certificateId: requireText(event.certificateId, 'certificateId'),
        certificatePem: requirePem(event.certificatePem, 'CERTIFICATE'),
        ownershipToken: requireText(event.certificateOwnershipToken, 'certificateOwnershipToken'),
        tokenIssuedAt: now,
      });
    case 'csr-rejected':
      if (record.step !== 'key-generated') return unexpected();
      return fail(reasonOfRejection('csr', event.rejection), rejectionText(event.rejection));
    case 'register-accepted':
      if (record.step !== 'certificate-issued') return unexpected();
      return advance({
        step: 'registered',
        csrPem: record.csrPem,
        certificateId: record.certificateId,
        certificatePem: record.certificatePem,
        thingName: requireText(event.thingName, 'thingName'),
      });
    case 'register-rejected': {
      if (record.step !== 'certificate-issued') return unexpected();
      const reason = reasonOfRejection('register', event.rejection);
      // A token the cloud no longer honours is worthless: the next try starts from the CSR, with the same key.
      const back = reason === 'TOKEN_EXPIRED' ? ({ step: 'key-generated', csrPem: record.csrPem } as const) : undefined;
      return fail(reason, rejectionText(event.rejection), back);
    }
    case 'timeout':
      if (event.request === 'csr' ? record.step !== 'key-generated' : record.step !== 'certificate-issued') return unexpected();
      return fail('SERVICE_UNAVAILABLE', `no reply to ${event.request === 'csr' ? 'CreateCertificateFromCsr' : 'RegisterThing'}`);
    case 'connection-failed': {
      if (record.step === 'provisioned') return unexpected();
      // The claim credentials are used only before `registered`; own-certificate failures only from it.
      const expected = record.step === 'registered' ? 'own' : 'claim';
      if (event.credentials !== expected) return unexpected();
      return fail(reasonOfConnectionFailure(event.credentials, event.problem, event.message), event.message);
    }
    case 'connected':
      if (record.step !== 'registered') return unexpected();
      return advance({
        step: 'provisioned',
        certificateId: record.certificateId,
        certificatePem: record.certificatePem,
        thingName: record.thingName,
        provisionedAt: now,
      });
    default:
      return assertNever(event);
  }
}

function failed(
  machine: ProvisioningMachine,
  failure: ProvisioningFailure,
  options: ProvisioningOptions,
  random: () => number,
  now: number,
  fallback: ProvisioningRecord | undefined,
): Transition {
  const record = fallback ?? machine.record;
  const failures = machine.failures + 1;
  const next: ProvisioningMachine = { record, failures, lastFailure: failure };
  const persist = fallback;
  const policy = failurePolicy(failure.reason);
  if (policy.action === 'stop' || failures >= options.maxAttempts) {
    return { machine: next, persist, decision: { kind: 'give-up', failure, exitCode: policy.exitCode } };
  }
  // An expired token is not the cloud being down: go straight back to the CSR, once without waiting.
  if (failure.reason === 'TOKEN_EXPIRED' && failures === 1) {
    const settled = settle(next, now, options);
    return { ...settled, persist: settled.persist ?? persist };
  }
  return { machine: next, persist, decision: { kind: 'wait', ms: backoffDelay(failures - 1, options.backoff, random), failure } };
}

function rejectionText({ statusCode, errorCode, errorMessage }: ProvisioningRejection): string {
  return `${statusCode} ${errorCode}: ${errorMessage}`;
}

function requireText(value: string, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new Error(`provisioning: ${field} must be a non-empty string`);
  return value;
}

function requirePem(value: string, label: string): string {
  if (typeof value !== 'string' || !value.includes(`-----BEGIN ${label}-----`)) {
    throw new Error(`provisioning: expected a PEM ${label}, got ${typeof value === 'string' ? `${value.slice(0, 40)}…` : typeof value}`);
  }
  if (/PRIVATE KEY-----/.test(value)) throw new Error('provisioning: a private key must never be in the provisioning state');
  return value;
}
