import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffCeiling } from '../../../agent/core/backoff.js';
import { EXIT_CONFIG, EXIT_UNAVAILABLE } from '../../../agent/core/connection-failure.js';
import {
  DEFAULT_CLOCK_FLOOR_MS,
  DEFAULT_TOKEN_LIFETIME_MS,
  failurePolicy,
  isProvisioned,
  needsFirstBoot,
  PROVISIONING_FAILURE_REASONS,
  proceed,
  type ProvisioningDecision,
  type ProvisioningEvent,
  type ProvisioningMachine,
  type ProvisioningOptions,
  type ProvisioningRecord,
  type ProvisioningRejection,
  reasonOfRejection,
  registerThingParameters,
  start,
  step,
  type Transition,
  UNPROVISIONED,
} from '../../../agent/core/provisioning.js';
import { HOOK_REFUSALS } from '../../../schemas/provisioning.js';

const T0 = Date.UTC(2026, 11, 1, 12);
const options: ProvisioningOptions = {
  parameters: { SerialNumber: '10000000abcdef01', Model: 'lekiwi', Batch: 'B1' },
  backoff: { baseMs: 1_000, capMs: 60_000 },
  maxAttempts: 6,
  tokenLifetimeMs: DEFAULT_TOKEN_LIFETIME_MS,
  clockFloorMs: DEFAULT_CLOCK_FLOOR_MS,
};
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';
const CERT = (id: string) => `-----BEGIN CERTIFICATE-----\n${id}\n-----END CERTIFICATE-----\n`;

const keyGenerated: ProvisioningRecord = { step: 'key-generated', csrPem: CSR };
const issued = (at = T0): ProvisioningRecord => ({
  step: 'certificate-issued',
  csrPem: CSR,
  certificateId: 'c1',
  certificatePem: CERT('c1'),
  ownershipToken: 'token-1',
  tokenIssuedAt: at,
});
const registered: ProvisioningRecord = { step: 'registered', csrPem: CSR, certificateId: 'c1', certificatePem: CERT('c1'), thingName: 'lekiwi-10000000abcdef01' };
const provisioned: ProvisioningRecord = { step: 'provisioned', certificateId: 'c1', certificatePem: CERT('c1'), thingName: 'lekiwi-10000000abcdef01', provisionedAt: T0 };

const machineAt = (record: ProvisioningRecord, failures = 0): ProvisioningMachine => ({ record, failures });
const rejected = (statusCode: number, errorCode: string, errorMessage: string): ProvisioningRejection => ({ statusCode, errorCode, errorMessage });

describe('provisioning: resuming from each persisted step', () => {
  it.each<[ProvisioningRecord, ProvisioningDecision['kind']]>([
    [UNPROVISIONED, 'generate-key'],
    [keyGenerated, 'request-certificate'],
    [issued(), 'register-thing'],
    [registered, 'connect-own'],
    [provisioned, 'done'],
  ])('%j → %s, with nothing to persist', (record, kind) => {
    const transition = start(record, T0 + 1_000, options);
    expect(transition.decision.kind).toBe(kind);
    expect(transition.persist).toBeUndefined();
  });

  it('sends RegisterThing the token and the template parameters, connects own certificate as the thing', () => {
    expect(start(issued(), T0, options).decision).toEqual({ kind: 'register-thing', certificateOwnershipToken: 'token-1', parameters: options.parameters });
    expect(start(registered, T0, options).decision).toEqual({ kind: 'connect-own', certificatePem: CERT('c1'), thingName: 'lekiwi-10000000abcdef01' });
  });
});

describe('provisioning: RegisterThing parameters', () => {
  it('sends serial, model and batch under the template names; the thing name is the hook\'s to set', () => {
    expect(registerThingParameters({ serial: '10000000abcdef01', model: 'lekiwi', batch: 'B1' })).toEqual({
      parameters: { SerialNumber: '10000000abcdef01', Model: 'lekiwi', Batch: 'B1' },
      thingName: 'lekiwi-10000000abcdef01',
    });
  });

  it('refuses a serial that cannot name a thing', () => {
    expect(() => registerThingParameters({ serial: 'a/b', model: 'lekiwi', batch: 'B1' })).toThrow(/letters, digits/);
  });
});

describe('provisioning: the happy path persists every step before acting', () => {
  it('unprovisioned → key-generated → certificate-issued → registered → provisioned', () => {
    let t: Transition = start(UNPROVISIONED, T0, options);
    const persisted: string[] = [];
    const feed = (event: ProvisioningEvent, now = T0) => {
      t = step(t.machine, event, now, options);
      if (t.persist) persisted.push(t.persist.step);
      return t.decision;
    };
    expect(t.decision).toEqual({ kind: 'generate-key' });
    expect(feed({ type: 'key-generated', csrPem: CSR })).toEqual({ kind: 'request-certificate', csrPem: CSR });
    expect(feed({ type: 'csr-accepted', certificateId: 'c1', certificatePem: CERT('c1'), certificateOwnershipToken: 'token-1' }).kind).toBe('register-thing');
    expect(t.machine.record).toMatchObject({ step: 'certificate-issued', tokenIssuedAt: T0, ownershipToken: 'token-1' });
    expect(feed({ type: 'register-accepted', thingName: 'lekiwi-10000000abcdef01' }).kind).toBe('connect-own');
    expect(isProvisioned(t.machine.record)).toBe(false);
    expect(feed({ type: 'connected' })).toEqual({ kind: 'done', thingName: 'lekiwi-10000000abcdef01', certificateId: 'c1' });
    expect(persisted).toEqual(['key-generated', 'certificate-issued', 'registered', 'provisioned']);
    expect(isProvisioned(t.machine.record)).toBe(true);
  });

  it('refuses a private key where a CSR or certificate belongs, naming it', () => {
    const key = '-----BEGIN CERTIFICATE REQUEST-----\n-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n';
    expect(() => step(machineAt(UNPROVISIONED), { type: 'key-generated', csrPem: key }, T0, options)).toThrow(/private key/);
    expect(() => step(machineAt(UNPROVISIONED), { type: 'key-generated', csrPem: 'nope' }, T0, options)).toThrow(/CERTIFICATE REQUEST/);
  });
});

describe('provisioning: the ownership token', () => {
  it('a token older than its lifetime restarts from the CSR at start, and that is persisted', () => {
    const t = start(issued(T0), T0 + DEFAULT_TOKEN_LIFETIME_MS, options);
    expect(t.persist).toEqual(keyGenerated);
    expect(t.decision).toEqual({ kind: 'request-certificate', csrPem: CSR });
  });

  it('a token still fresh one millisecond before its lifetime is used', () => {
    expect(start(issued(T0), T0 + DEFAULT_TOKEN_LIFETIME_MS - 1, options).decision.kind).toBe('register-thing');
  });

  it('a token that expires during a backoff wait is dropped when the wait ends', () => {
    const waiting = step(machineAt(issued(T0)), { type: 'timeout', request: 'register' }, T0 + 1_000, options, () => 0.5);
    expect(waiting.decision.kind).toBe('wait');
    const after = proceed(waiting.machine, T0 + DEFAULT_TOKEN_LIFETIME_MS + 1, options);
    expect(after.persist).toEqual(keyGenerated);
    expect(after.decision.kind).toBe('request-certificate');
  });

  it('a token from the future (the clock went back) is not trusted', () => {
    expect(start(issued(T0), T0 - 60_000, options).decision.kind).toBe('request-certificate');
  });

  it('RegisterThing rejecting the token goes back to the CSR at once (same key, same CSR), persisted', () => {
    const t = step(machineAt(issued()), { type: 'register-rejected', rejection: rejected(400, 'InvalidCertificateOwnershipToken', 'token expired') }, T0, options);
    expect(t.persist).toEqual(keyGenerated);
    expect(t.decision).toEqual({ kind: 'request-certificate', csrPem: CSR });
    expect(t.machine.lastFailure?.reason).toBe('TOKEN_EXPIRED');
  });

  it('a second token rejection in a row backs off instead of spinning', () => {
    const t = step(machineAt(issued(), 1), { type: 'register-rejected', rejection: rejected(400, 'InvalidToken', 'unknown token') }, T0, options, () => 0.5);
    expect(t.decision).toMatchObject({ kind: 'wait', failure: { reason: 'TOKEN_EXPIRED' } });
    expect(t.persist).toEqual(keyGenerated);
  });
});

describe('provisioning: rejections map to named reasons', () => {
  it.each(HOOK_REFUSALS.map((reason) => [reason] as const))('the local hook reason %s in errorMessage is that reason', (reason) => {
    const rejection = rejected(403, 'AccessDenied', `pre-provisioning hook refused: ${reason}`);
    expect(reasonOfRejection('register', rejection)).toBe(reason);
  });

  it.each<[ProvisioningRejection, 'csr' | 'register', string]>([
    [rejected(403, 'AccessDenied', 'Access denied'), 'register', 'CLAIM_REJECTED'],
    [rejected(403, 'ACCESS_DENIED', 'Not authorized'), 'csr', 'CLAIM_REJECTED'],
    [rejected(404, 'ResourceNotFound', 'Template heartbeat-claim not found'), 'register', 'TEMPLATE_NOT_FOUND'],
    [rejected(400, 'InvalidRequest', 'No provisioning template named heartbeat-x'), 'register', 'TEMPLATE_NOT_FOUND'],
    [rejected(500, 'InternalFailure', 'boom'), 'csr', 'SERVICE_UNAVAILABLE'],
    [rejected(429, 'Throttled', 'slow down'), 'register', 'SERVICE_UNAVAILABLE'],
    [rejected(400, 'InvalidPayload', 'certificateOwnershipToken is invalid'), 'register', 'TOKEN_EXPIRED'],
  ])('%j from %s → %s', (rejection, request, reason) => {
    expect(reasonOfRejection(request, rejection)).toBe(reason);
  });

  it.each<[string, 'retry' | 'stop', number]>([
    ['CLAIM_REJECTED', 'stop', EXIT_CONFIG],
    ['HOOK_DENIED_UNKNOWN_SERIAL', 'stop', EXIT_CONFIG],
    ['HOOK_DENIED_RETIRED', 'stop', EXIT_CONFIG],
    ['HOOK_DENIED_ALREADY_CLAIMED', 'retry', EXIT_CONFIG],
    ['HOOK_DENIED_BATCH_EXHAUSTED', 'stop', EXIT_CONFIG],
    ['HOOK_DENIED_WRONG_BATCH', 'stop', EXIT_CONFIG],
    ['HOOK_DENIED_MODEL_MISMATCH', 'stop', EXIT_CONFIG],
    ['HOOK_DENIED_INVALID_REQUEST', 'stop', EXIT_CONFIG],
    ['TEMPLATE_NOT_FOUND', 'stop', EXIT_CONFIG],
    ['TLS_CA_MISMATCH', 'stop', EXIT_CONFIG],
    ['CLOCK_SKEW', 'retry', EXIT_CONFIG],
    ['CERTIFICATE_REJECTED', 'retry', EXIT_CONFIG],
    ['ENDPOINT_UNREACHABLE', 'retry', EXIT_UNAVAILABLE],
    ['SERVICE_UNAVAILABLE', 'retry', EXIT_UNAVAILABLE],
    ['TOKEN_EXPIRED', 'retry', EXIT_UNAVAILABLE],
  ])('%s: %s, exit %i', (reason, action, exitCode) => {
    expect(failurePolicy(reason as never)).toEqual({ action, exitCode });
  });

  it('every named reason has a row above', () => {
    expect(PROVISIONING_FAILURE_REASONS).toHaveLength(15);
  });

  it('a stopping reason gives up at once with its exit code, keeping the step', () => {
    const t = step(machineAt(issued()), { type: 'register-rejected', rejection: rejected(403, 'AccessDenied', 'HOOK_DENIED_RETIRED') }, T0, options);
    expect(t.decision).toEqual({ kind: 'give-up', exitCode: EXIT_CONFIG, failure: { reason: 'HOOK_DENIED_RETIRED', detail: '403 AccessDenied: HOOK_DENIED_RETIRED' } });
    expect(t.persist).toBeUndefined();
    expect(t.machine.record).toEqual(issued());
  });

  it('a retrying reason waits and then asks the same again', () => {
    const t = step(machineAt(keyGenerated), { type: 'csr-rejected', rejection: rejected(503, 'ServiceUnavailable', 'x') }, T0, options, () => 0.5);
    expect(t.decision).toMatchObject({ kind: 'wait', failure: { reason: 'SERVICE_UNAVAILABLE' } });
    expect(proceed(t.machine, T0 + 1_000, options).decision).toEqual({ kind: 'request-certificate', csrPem: CSR });
  });
});

describe('provisioning: connection failures', () => {
  const failed = (record: ProvisioningRecord, credentials: 'claim' | 'own', problem: 'tls' | 'rejected' | 'unreachable' | 'credentials' | 'unknown', message: string) =>
    step(machineAt(record), { type: 'connection-failed', credentials, problem, message }, T0, options, () => 0.5);

  it.each<[ProvisioningRecord, 'claim' | 'own', 'tls' | 'rejected' | 'unreachable' | 'credentials' | 'unknown', string, string, string]>([
    [keyGenerated, 'claim', 'tls', 'AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE', 'TLS_CA_MISMATCH', 'give-up'],
    [keyGenerated, 'claim', 'rejected', 'CONNACK_CONNECTION_REFUSED', 'CLAIM_REJECTED', 'give-up'],
    [UNPROVISIONED, 'claim', 'unreachable', 'AWS_IO_DNS_INVALID_NAME', 'ENDPOINT_UNREACHABLE', 'wait'],
    [issued(), 'claim', 'tls', 'AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE: certificate is not yet valid', 'CLOCK_SKEW', 'wait'],
    [registered, 'own', 'rejected', 'AWS_ERROR_MQTT_UNEXPECTED_HANGUP', 'CERTIFICATE_REJECTED', 'wait'],
    [registered, 'own', 'unknown', 'weird', 'ENDPOINT_UNREACHABLE', 'wait'],
  ])('%j with %s credentials, %s (%s) → %s, %s', (record, credentials, problem, message, reason, kind) => {
    const t = failed(record, credentials, problem, message);
    expect(t.decision.kind).toBe(kind);
    expect(t.machine.lastFailure?.reason).toBe(reason);
  });

  it('once registered, a claim-credential event changes nothing: no fallback to the claim key', () => {
    const t = failed(registered, 'claim', 'rejected', 'CONNACK_CONNECTION_REFUSED');
    expect(t.decision.kind).toBe('connect-own');
    expect(t.persist).toBeUndefined();
    expect(t.machine.failures).toBe(0);
  });

  it.each([UNPROVISIONED, keyGenerated, registered])('a clock before the floor waits with CLOCK_SKEW instead of trying TLS (%j)', (record) => {
    const t = start(record, Date.UTC(1970, 0, 1, 0, 0, 42), options);
    expect(t.decision).toMatchObject({ kind: 'wait', failure: { reason: 'CLOCK_SKEW' } });
  });
});

describe('provisioning: events out of place change nothing', () => {
  it.each<[ProvisioningRecord, ProvisioningEvent]>([
    [issued(), { type: 'csr-accepted', certificateId: 'c2', certificatePem: CERT('c2'), certificateOwnershipToken: 't2' }],
    [issued(), { type: 'key-generated', csrPem: CSR }],
    [keyGenerated, { type: 'register-accepted', thingName: 'lekiwi-x' }],
    [keyGenerated, { type: 'connected' }],
    [registered, { type: 'register-rejected', rejection: rejected(403, 'AccessDenied', 'x') }],
    [provisioned, { type: 'connection-failed', credentials: 'own', problem: 'unreachable', message: 'x' }],
    [keyGenerated, { type: 'timeout', request: 'register' }],
  ])('%j ignores %j', (record, event) => {
    const t = step(machineAt(record), event, T0, options);
    expect(t.persist).toBeUndefined();
    expect(t.machine.record).toEqual(record);
    expect(t.machine.failures).toBe(0);
  });
});

describe('provisioning: backoff', () => {
  it('waits grow within the backoff ceilings and give up after maxAttempts with the reason exit code', () => {
    let machine = machineAt(keyGenerated);
    const waits: number[] = [];
    for (let attempt = 0; attempt < options.maxAttempts; attempt++) {
      const t = step(machine, { type: 'connection-failed', credentials: 'claim', problem: 'unreachable', message: 'AWS_IO_SOCKET_TIMEOUT' }, T0, options, () => 0.999_999);
      machine = t.machine;
      if (attempt < options.maxAttempts - 1) {
        expect(t.decision.kind).toBe('wait');
        waits.push((t.decision as { ms: number }).ms);
      } else {
        expect(t.decision).toMatchObject({ kind: 'give-up', exitCode: EXIT_UNAVAILABLE, failure: { reason: 'ENDPOINT_UNREACHABLE' } });
      }
    }
    expect(waits).toEqual(waits.map((_, attempt) => backoffCeiling(attempt, options.backoff)));
  });

  it('progress resets the count of failures', () => {
    const t = step(machineAt(keyGenerated, 4), { type: 'csr-accepted', certificateId: 'c1', certificatePem: CERT('c1'), certificateOwnershipToken: 't' }, T0, options);
    expect(t.machine.failures).toBe(0);
  });

  it('property: every wait lies in [0, ceiling of its attempt]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 20 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (failures, draw) => {
        const t = step(machineAt(keyGenerated, failures), { type: 'timeout', request: 'csr' }, T0, { ...options, maxAttempts: 100 }, () => draw);
        expect(t.decision.kind).toBe('wait');
        const ms = (t.decision as { ms: number }).ms;
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThanOrEqual(backoffCeiling(failures, options.backoff));
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A simulated cloud and a robot that crashes: whatever happens, once the cloud stops failing, the robot ends
// provisioned with exactly one active certificate, the one its record names.

type Outcome = 'ok' | 'crash-before' | 'crash-after' | 'fail' | 'timeout' | 'unreachable' | 'clock-jump' | 'give-up-restart';

interface Certificate {
  status: 'PENDING_ACTIVATION' | 'ACTIVE' | 'INACTIVE';
  token: string;
  tokenUsed: boolean;
  issuedAt: number;
}

class Cloud {
  readonly certificates = new Map<string, Certificate>();
  thingCertificate: string | undefined;
  private next = 0;
  constructor(private readonly tokenTtlMs: number) {}

  createFromCsr(now: number) {
    const id = `cert-${++this.next}`;
    const token = `token-${this.next}`;
    this.certificates.set(id, { status: 'PENDING_ACTIVATION', token, tokenUsed: false, issuedAt: now });
    return { certificateId: id, certificatePem: CERT(id), certificateOwnershipToken: token };
  }

  register(token: string, now: number): { ok: true; thingName: string } | { ok: false; rejection: ProvisioningRejection } {
    const entry = [...this.certificates.entries()].find(([, c]) => c.token === token);
    if (!entry || entry[1].tokenUsed || now - entry[1].issuedAt > this.tokenTtlMs) {
      return { ok: false, rejection: rejected(400, 'InvalidCertificateOwnershipToken', 'the certificate ownership token is invalid or expired') };
    }
    const [id, certificate] = entry;
    certificate.tokenUsed = true;
    // A re-registration of the same serial (the reply to an earlier one was lost): the old certificate is superseded.
    if (this.thingCertificate !== undefined && this.thingCertificate !== id) this.certificates.get(this.thingCertificate)!.status = 'INACTIVE';
    certificate.status = 'ACTIVE';
    this.thingCertificate = id;
    return { ok: true, thingName: 'lekiwi-10000000abcdef01' };
  }

  active(): string[] {
    return [...this.certificates.entries()].filter(([, c]) => c.status === 'ACTIVE').map(([id]) => id);
  }
}

describe('provisioning: crashes and restarts (property)', () => {
  it('any sequence of crashes, lost replies and failures ends provisioned with exactly one certificate in use', () => {
    const outcome = fc.constantFrom<Outcome>('ok', 'crash-before', 'crash-after', 'fail', 'timeout', 'unreachable', 'clock-jump', 'give-up-restart');
    fc.assert(
      fc.property(fc.array(outcome, { maxLength: 80 }), fc.constantFrom(DEFAULT_TOKEN_LIFETIME_MS, 60 * 60_000), (script, cloudTtl) => {
        const cloud = new Cloud(cloudTtl);
        let disk: ProvisioningRecord = UNPROVISIONED;
        let now = T0;
        let index = 0;
        const nextOutcome = (): Outcome => script[index++] ?? 'ok';
        const apply = (t: Transition): Transition => {
          if (t.persist) disk = t.persist;
          // The decision is only ever "done" from the provisioned step.
          if (t.decision.kind === 'done') expect(isProvisioned(t.machine.record)).toBe(true);
          expect(JSON.stringify(t)).not.toMatch(/PRIVATE KEY/);
          return t;
        };
        let t = apply(start(disk, now, options));
        const restart = () => (t = apply(start(disk, now, options)));
        const feed = (event: ProvisioningEvent) => (t = apply(step(t.machine, event, now, options, () => 0.5)));

        for (let turn = 0; turn < 1_000 && t.decision.kind !== 'done'; turn++) {
          now += 100;
          const decision = t.decision;
          if (decision.kind === 'wait') {
            now += decision.ms;
            t = apply(proceed(t.machine, now, options));
            continue;
          }
          if (decision.kind === 'give-up') {
            expect(failurePolicy(decision.failure.reason).action === 'stop' || t.machine.failures >= options.maxAttempts).toBe(true);
            restart(); // systemd starts the agent again
            continue;
          }
          const what = nextOutcome();
          if (what === 'crash-before' || what === 'give-up-restart') {
            restart();
            continue;
          }
          if (what === 'clock-jump') {
            now += 10 * 60_000;
            continue;
          }
          switch (decision.kind) {
            case 'generate-key':
              if (what === 'crash-after') restart();
              else feed({ type: 'key-generated', csrPem: CSR });
              break;
            case 'request-certificate': {
              if (what === 'unreachable') feed({ type: 'connection-failed', credentials: 'claim', problem: 'unreachable', message: 'AWS_IO_SOCKET_TIMEOUT' });
              else if (what === 'fail') feed({ type: 'csr-rejected', rejection: rejected(500, 'InternalFailure', 'x') });
              else {
                const reply = cloud.createFromCsr(now);
                if (what === 'crash-after') restart();
                else if (what === 'timeout') feed({ type: 'timeout', request: 'csr' });
                else feed({ type: 'csr-accepted', ...reply });
              }
              break;
            }
            case 'register-thing': {
              if (what === 'unreachable') feed({ type: 'connection-failed', credentials: 'claim', problem: 'unreachable', message: 'AWS_IO_SOCKET_TIMEOUT' });
              else if (what === 'fail') feed({ type: 'register-rejected', rejection: rejected(500, 'InternalFailure', 'x') });
              else {
                const reply = cloud.register(decision.certificateOwnershipToken, now);
                if (what === 'crash-after') restart();
                else if (what === 'timeout') feed({ type: 'timeout', request: 'register' });
                else if (reply.ok) feed({ type: 'register-accepted', thingName: reply.thingName });
                else feed({ type: 'register-rejected', rejection: reply.rejection });
              }
              break;
            }
            case 'connect-own': {
              const record = t.machine.record as Extract<ProvisioningRecord, { step: 'registered' }>;
              const accepted = cloud.certificates.get(record.certificateId)?.status === 'ACTIVE';
              if (what === 'unreachable' || what === 'timeout') feed({ type: 'connection-failed', credentials: 'own', problem: 'unreachable', message: 'AWS_IO_SOCKET_TIMEOUT' });
              else if (!accepted || what === 'fail') feed({ type: 'connection-failed', credentials: 'own', problem: 'rejected', message: 'AWS_ERROR_MQTT_UNEXPECTED_HANGUP' });
              else if (what === 'crash-after') restart();
              else feed({ type: 'connected' });
              break;
            }
            default:
              throw new Error(`unexpected decision ${JSON.stringify(decision)}`);
          }
        }

        expect(t.decision.kind).toBe('done');
        expect(disk.step).toBe('provisioned');
        const record = disk as Extract<ProvisioningRecord, { step: 'provisioned' }>;
        expect(cloud.active()).toEqual([record.certificateId]);
        expect(cloud.thingCertificate).toBe(record.certificateId);
      }),
      { numRuns: 300 },
    );
  });
});

describe('provisioning: whether the agent runs its first boot before it starts as the robot', () => {
  it.each<[ProvisioningRecord, boolean, boolean]>([
    [UNPROVISIONED, false, true],
    // A robot set up by hand (`npm run cert`) with a provisioning section keeps its certificate.
    [UNPROVISIONED, true, false],
    [keyGenerated, true, true],
    [issued(), true, true],
    [registered, true, true],
    [registered, false, true],
    [provisioned, false, false],
    [provisioned, true, false],
  ])('%j with a certificate of its own on disk: %s → %s', (record, ownCertificateExists, expected) => {
    expect(needsFirstBoot(record, ownCertificateExists)).toBe(expected);
  });
});
