import { createHash } from 'node:crypto';
import { link as hardLink, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { claimClientId, provisioningTopics, type ProvisioningExchange } from '../schemas/provisioning.js';
import type { AgentEvent } from '../schemas/device.js';
import { describeError } from '../lib/describe-error.js';
import { replaceFileAtomically, syncDirectory, TEMPORARY_SUFFIX } from './adapters/durable-file.js';
import type { Logger, LogFields } from './adapters/json-log.js';
import type { Link, MqttLinkOptions } from './adapters/mqtt-link.js';
import type { ProvisioningStore } from './adapters/provisioning-store.js';
import type { AgentConfig, ProvisioningSettings } from './config.js';
import type { BackoffOptions } from './core/backoff.js';
import { diagnoseConnectionFailure, type ConnectionProblem } from './core/connection-failure.js';
import {
  DEFAULT_CLOCK_FLOOR_MS,
  DEFAULT_TOKEN_LIFETIME_MS,
  failurePolicy,
  type ProvisioningEvent,
  type ProvisioningFailure,
  type ProvisioningMachine,
  type ProvisioningOptions,
  type ProvisioningRecord,
  type ProvisioningStep,
  type Transition,
  proceed,
  reasonOfConnectionFailure,
  registerThingParameters,
  start,
  step,
} from './core/provisioning.js';

/**
 * The agent's first boot over MQTT (issue 11, item 3): the thin driver of the pure core agent/core/provisioning.ts.
 * It connects with the batch's claim certificate as `claim-<serial>`, asks for a certificate from the robot's own CSR
 * (CreateCertificateFromCsr), registers it (RegisterThing with SerialNumber, Model and Batch), installs the robot's
 * certificate at agent.json `certificateFile` and its key at `privateKeyFile`, and hands over: the agent then starts
 * as usual with its own certificate, and the first CONNACK it gets as its thing name is what makes the robot
 * `provisioned` (`confirmConnected`).
 *
 * INVARIANTS
 * - Every record the core decides is written (atomically, agent/adapters/provisioning-store.ts) BEFORE the driver
 *   acts on the decision that follows it, so a SIGKILL at any point resumes from the last step written.
 * - The replies' topics are subscribed (SUBACK received) before any request is published, after every reconnection
 *   too: AWS answers only the connection that asked, and only if it listens already.
 * - The private key is read by nothing here: it is made by the store (0600), linked (or, across file systems, copied
 *   0600) to privateKeyFile, and only the CSR is ever published. The claim key is used for the claim connection only
 *   and is never deleted.
 * - Nothing here says the robot is up: the claim connection is logged as such ("claim link connected", never
 *   "connected"/"online"), and success is decided by the core only from a connection with the robot's own certificate.
 * - Each failure is one named reason (the core's), logged with what happened, kept in `failures.json` beside the
 *   state, and reported as a `ProvisioningFailed` agent event once the robot can talk with its own certificate; a
 *   failure that ends the run exits with the reason's status (78 setup, 69 unavailable).
 * - A lost RegisterThing reply does not make a second certificate: before a refused token is given up, the robot
 *   tries its new certificate as its thing; if the broker admits it, the registration happened and the driver goes on
 *   with it.
 */

/** Which outcome the first boot ended with. */
export type FirstBootResult =
  /** Registered, certificate and key installed at certificateFile/privateKeyFile: start the agent, then `confirmConnected`. */
  | { readonly kind: 'ready'; readonly thingName: string }
  /** Already provisioned (credentials re-installed if a crash left them missing): start the agent as usual. */
  | { readonly kind: 'provisioned'; readonly thingName: string }
  /** Log, exit with `exitCode`; systemd starts the agent again and the first boot resumes. */
  | { readonly kind: 'gave-up'; readonly failure: ProvisioningFailure; readonly exitCode: number };

export interface FirstBootOptions {
  readonly config: AgentConfig & { readonly provisioning: ProvisioningSettings };
  /** The robot's hardware serial (agent/adapters/hardware-serial.ts). */
  readonly serial: string;
  readonly store: ProvisioningStore;
  /** Makes the claim connection (MqttLink in the agent; a fake in unit tests). */
  readonly createLink: (options: MqttLinkOptions, log: Logger) => Link;
  readonly log: Logger;
  /** Wall clock, ms since the epoch (tokens, the clock floor). Default Date.now. */
  readonly now?: () => number;
  readonly random?: () => number;
  readonly wait?: (ms: number) => Promise<void>;
  /** How long a request waits for its reply before it counts as SERVICE_UNAVAILABLE. Default 15 s. */
  readonly replyTimeoutMs?: number;
  /** Request failures in a row after which a retried reason gives up (exit status of the reason). Default 8. */
  readonly maxAttempts?: number;
  readonly backoff?: BackoffOptions;
  /** Called after each record is persisted (tests stop the process there). */
  readonly afterPersist?: (step: ProvisioningStep) => void | Promise<void>;
}

const DEFAULT_REPLY_TIMEOUT_MS = 15_000;
const DEFAULT_MAX_ATTEMPTS = 8;
const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, capMs: 60_000 };

// ---------------------------------------------------------------------------------------------------------------
// Replies (AWS IoT fleet provisioning MQTT API, JSON)

const CsrAccepted = z.object({ certificateId: z.string().min(1), certificatePem: z.string().min(1), certificateOwnershipToken: z.string().min(1) });
const RegisterAccepted = z.object({ thingName: z.string().min(1), deviceConfiguration: z.record(z.string(), z.unknown()).optional() });
const Rejected = z.object({ statusCode: z.number(), errorCode: z.string().default(''), errorMessage: z.string().default('') });

type RequestKind = 'csr' | 'register';

/** A reply body that is not what AWS documents: the service is not behaving, retry like an outage. */
function malformed(kind: RequestKind, problem: string): ProvisioningEvent {
  const rejection = { statusCode: 502, errorCode: 'InvalidReply', errorMessage: `unreadable reply: ${problem}` };
  return kind === 'csr' ? { type: 'csr-rejected', rejection } : { type: 'register-rejected', rejection };
}

function eventOfReply(kind: RequestKind, outcome: 'accepted' | 'rejected', payload: Buffer): ProvisioningEvent {
  let body: unknown;
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch {
    return malformed(kind, 'not JSON');
  }
  if (outcome === 'rejected') {
    const parsed = Rejected.safeParse(body);
    if (!parsed.success) return malformed(kind, 'a rejection without statusCode');
    return kind === 'csr' ? { type: 'csr-rejected', rejection: parsed.data } : { type: 'register-rejected', rejection: parsed.data };
  }
  if (kind === 'csr') {
    const parsed = CsrAccepted.safeParse(body);
    if (!parsed.success || !parsed.data.certificatePem.includes('-----BEGIN CERTIFICATE-----')) return malformed(kind, 'no certificate in it');
    return { type: 'csr-accepted', ...parsed.data };
  }
  const parsed = RegisterAccepted.safeParse(body);
  if (!parsed.success) return malformed(kind, 'no thingName in it');
  return { type: 'register-accepted', thingName: parsed.data.thingName };
}

// ---------------------------------------------------------------------------------------------------------------
// The claim connection

/** A provisioning link says what it is: never "connected" alone, which reads as the robot being up. */
function provisioningLinkLog(log: Logger, what: 'claim link' | 'registration probe'): Logger {
  const rename = (message: string) =>
    message === 'connected' || message === 'reconnected' ? `${what} ${message} (provisioning only; the robot is not online yet)` : message;
  const wrap = (inner: Logger): Logger => ({
    debug: (message, fields) => inner.debug(rename(message), fields),
    info: (message, fields) => inner.info(rename(message), fields),
    warn: (message, fields) => inner.warn(rename(message), fields),
    error: (message, fields) => inner.error(rename(message), fields),
    child: (fields: LogFields) => wrap(inner.child(fields)),
  });
  return wrap(log);
}

/** The link gave up its first connection (its budget spent, or files it cannot use): no point retrying in this run. */
class ClaimLinkGaveUp {
  constructor(
    readonly problem: ConnectionProblem,
    readonly message: string,
  ) {}
}

/**
 * One request/reply at a time over the claim connection. INVARIANT: a request is published only while its reply
 * topics are subscribed on the current connection (subscribed again, SUBACK awaited, after each reconnection); a
 * reply that comes while no request of its kind waits (a late one, after a timeout) is ignored.
 */
class ClaimExchanges {
  private link: Link | undefined;
  /** The connection (counted from 0) on which each exchange's replies were last subscribed. */
  private readonly subscribedOn: Record<RequestKind, number> = { csr: -1, register: -1 };
  private connection = 0;
  private waiting: { kind: RequestKind; settle: (event: ProvisioningEvent) => void } | undefined;
  private readonly exchanges: Record<RequestKind, ProvisioningExchange>;

  constructor(
    private readonly options: Pick<FirstBootOptions, 'config' | 'serial' | 'createLink' | 'log'>,
    private readonly replyTimeoutMs: number,
  ) {
    const topics = provisioningTopics(options.config.provisioning.templateName);
    this.exchanges = { csr: topics.createCertificateFromCsr, register: topics.registerThing };
  }

  /** Publishes the request and resolves with its reply as a core event (or a timeout, or the link's failure). */
  async request(kind: RequestKind, body: Record<string, unknown>): Promise<ProvisioningEvent | ClaimLinkGaveUp> {
    const link = await this.connected();
    if (link instanceof ClaimLinkGaveUp) return link;
    const exchange = this.exchanges[kind];
    if (!link.isConnected) await this.reconnected(link);
    if (!link.isConnected) return { type: 'timeout', request: kind };
    try {
      await this.subscribe(link, kind);
    } catch (error) {
      const problem = describeError(error);
      this.options.log.warn('provisioning: subscribing to the replies failed', { request: exchange.request, error: problem });
      if (!/refused the subscription/.test(problem)) return { type: 'timeout', request: kind };
      // The claim policy allows only its template's topics: a refused RegisterThing reply topic means agent.json
      // names another template (TEMPLATE_NOT_FOUND); a refused CreateCertificateFromCsr one, a claim without the policy.
      const rejection = { statusCode: 403, errorCode: 'SubscriptionRefused', errorMessage: `${problem} (template ${this.options.config.provisioning.templateName})` };
      return kind === 'csr' ? { type: 'csr-rejected', rejection: { ...rejection, errorMessage: problem } } : { type: 'register-rejected', rejection };
    }
    const reply = new Promise<ProvisioningEvent>((resolve) => {
      const timer = setTimeout(() => settle({ type: 'timeout', request: kind }), this.replyTimeoutMs);
      const settle = (event: ProvisioningEvent) => {
        clearTimeout(timer);
        if (this.waiting?.settle === settle) this.waiting = undefined;
        resolve(event);
      };
      this.waiting = { kind, settle };
    });
    try {
      await link.publish(exchange.request, JSON.stringify(body), 1);
    } catch (error) {
      // The link dropped under the publish: the reply (if any) cannot come on this connection.
      this.options.log.warn('provisioning: request not sent', { request: exchange.request, error: describeError(error) });
      this.waiting?.settle({ type: 'timeout', request: kind });
    }
    return reply;
  }

  /** Clean DISCONNECT of the claim connection. Idempotent. */
  async close(): Promise<void> {
    const link = this.link;
    this.link = undefined;
    // A next request makes a new connection, which has subscribed nothing yet.
    this.connection += 1;
    this.waiting?.settle({ type: 'timeout', request: this.waiting.kind });
    await link?.stop();
  }

  private async connected(): Promise<Link | ClaimLinkGaveUp> {
    if (this.link) return this.link;
    const { config, serial, createLink, log } = this.options;
    const claim = config.provisioning;
    const clientId = claimClientId(serial);
    const link = createLink(
      {
        endpoint: config.endpoint,
        port: config.port,
        clientId,
        certificateFile: claim.claimCertificateFile,
        privateKeyFile: claim.claimPrivateKeyFile,
        caFile: config.caFile,
        keepAliveSeconds: config.keepAliveSeconds,
        reconnect: config.reconnect,
        operationTimeoutMs: this.replyTimeoutMs,
        firstConnectionBudgetSeconds: config.firstConnectionBudgetSeconds,
      },
      provisioningLinkLog(log.child({ component: 'claim-link', clientId }), 'claim link'),
    );
    link.on('resumed', () => {
      this.connection += 1;
    });
    // AWS answers on the connection that asked: once it is gone, the reply cannot come; retry on the next one.
    link.on('interrupted', () => this.waiting?.settle({ type: 'timeout', request: this.waiting.kind }));
    try {
      await link.start();
    } catch (error) {
      await link.stop().catch(() => undefined);
      const gaveUp = error as { problem?: ConnectionProblem; cause?: unknown };
      const message = describeError(gaveUp.cause ?? error);
      const problem = gaveUp.problem ?? diagnoseConnectionFailure(message, config).problem;
      return new ClaimLinkGaveUp(problem, message);
    }
    this.link = link;
    return link;
  }

  /** Subscribes the exchange's accepted and rejected topics on this connection, SUBACK awaited, once per connection. */
  private async subscribe(link: Link, kind: RequestKind): Promise<void> {
    if (this.subscribedOn[kind] === this.connection) return;
    const connection = this.connection;
    const exchange = this.exchanges[kind];
    await link.subscribe(exchange.accepted, (_topic, payload) => this.deliver(kind, 'accepted', payload));
    await link.subscribe(exchange.rejected, (_topic, payload) => this.deliver(kind, 'rejected', payload));
    this.subscribedOn[kind] = connection;
  }

  private reconnected(link: Link): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        link.off('resumed', done);
        resolve();
      };
      const timer = setTimeout(done, this.replyTimeoutMs);
      link.on('resumed', done);
    });
  }

  private deliver(kind: RequestKind, outcome: 'accepted' | 'rejected', payload: Buffer): void {
    const waiting = this.waiting;
    if (!waiting || waiting.kind !== kind) {
      this.options.log.debug('provisioning: reply with no request waiting, ignored', { request: kind, outcome });
      return;
    }
    waiting.settle(eventOfReply(kind, outcome, payload));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Failures kept for the cloud

const StoredFailure = z.object({ reason: z.string(), detail: z.string(), step: z.string(), at: z.number(), attempt: z.number() }).strict();
type StoredFailure = z.infer<typeof StoredFailure>;
const MAX_KEPT_FAILURES = 20;

/**
 * The failures of the first boot so far, across restarts (`<stateDir>/provisioning/failures.json`, replaced
 * atomically): the newest MAX_KEPT_FAILURES, reported once the robot can talk, then cleared.
 */
export class FailureJournal {
  readonly file: string;
  constructor(directory: string) {
    this.file = join(directory, 'failures.json');
  }

  async list(): Promise<StoredFailure[]> {
    try {
      const parsed = z.array(StoredFailure).safeParse(JSON.parse(await readFile(this.file, 'utf8')));
      return parsed.success ? parsed.data : [];
    } catch {
      return [];
    }
  }

  async add(failure: StoredFailure): Promise<void> {
    const kept = [...(await this.list()), failure].slice(-MAX_KEPT_FAILURES);
    await replaceFileAtomically(this.file, `${JSON.stringify(kept)}\n`, 0o600);
  }

  async clear(): Promise<void> {
    await rm(this.file, { force: true });
  }
}

/**
 * The `ProvisioningFailed` agent event of a failure (schemas/device.ts ProvisioningFailedData). The id is derived from
 * the failure, so a report repeated after a crash (reported, not yet cleared) is the same event.
 */
export function provisioningFailedEvent(failure: StoredFailure, serial: string): AgentEvent {
  const digest = createHash('sha256').update(`${serial}|${failure.at}|${failure.attempt}|${failure.reason}`).digest('hex').slice(0, 32);
  return {
    eventId: `provisioning-failed:${digest}`,
    occurredAt: new Date(failure.at).toISOString(),
    type: 'ProvisioningFailed',
    data: { serial, reason: failure.reason, detail: failure.detail.slice(0, 500), step: failure.step, attempt: failure.attempt },
  };
}

/** The first boot's failures not reported yet, as ProvisioningFailed events; `clear` once they are in the outbox. */
export interface FailureReports {
  events(): Promise<AgentEvent[]>;
  clear(): Promise<void>;
}

export function failureReports(store: ProvisioningStore, serial: string): FailureReports {
  const journal = new FailureJournal(store.files.directory);
  return {
    events: async () => (await journal.list()).map((failure) => provisioningFailedEvent(failure, serial)),
    clear: () => journal.clear(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Installing the robot's own credentials where agent.json names them

/**
 * Puts the robot's certificate at `certificateFile` and its key at `privateKeyFile`, each replaced atomically. The key
 * is hard-linked (the same 0600 file, no second copy of the secret); across file systems it is copied 0600. Does
 * nothing for a path that already is the store's file. Safe to repeat.
 */
async function installOwnCredentials(store: ProvisioningStore, config: AgentConfig, certificatePem: string): Promise<void> {
  const { keyFile } = store.files;
  await mkdir(dirname(config.privateKeyFile), { recursive: true, mode: 0o700 });
  await mkdir(dirname(config.certificateFile), { recursive: true, mode: 0o700 });
  // The key first: a certificate in place then always has its key beside it.
  if (resolve(config.privateKeyFile) !== resolve(keyFile)) {
    const temporary = `${config.privateKeyFile}${TEMPORARY_SUFFIX}`;
    await rm(temporary, { force: true });
    try {
      await hardLink(keyFile, temporary);
      await rename(temporary, config.privateKeyFile);
      await syncDirectory(dirname(config.privateKeyFile));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      await replaceFileAtomically(config.privateKeyFile, await readFile(keyFile, 'utf8'), 0o600);
    }
  }
  if (resolve(config.certificateFile) !== resolve(store.files.certificateFile)) {
    await replaceFileAtomically(config.certificateFile, certificatePem, 0o644);
  }
}

/**
 * A provisioned robot whose certificateFile is missing or another (a crash between the record and the install, or a
 * hand-edited file): installs the provisioned certificate and key again. Nothing to do otherwise.
 */
export async function ensureInstalled(
  store: ProvisioningStore,
  config: AgentConfig,
  record: Extract<ProvisioningRecord, { step: 'provisioned' }>,
): Promise<boolean> {
  if (await sameCertificateInstalled(config.certificateFile, record.certificatePem)) return false;
  await installOwnCredentials(store, config, record.certificatePem);
  return true;
}

async function sameCertificateInstalled(path: string, certificatePem: string): Promise<boolean> {
  return readFile(path, 'utf8').then(
    (text) => text === certificatePem,
    () => false,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The driver

export class FirstBoot {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly wait: (ms: number) => Promise<void>;
  private readonly core: ProvisioningOptions;
  private readonly thingName: string;
  private readonly journal: FailureJournal;
  private machine: ProvisioningMachine | undefined;

  constructor(private readonly options: FirstBootOptions) {
    const { provisioning } = options.config;
    const robot = registerThingParameters({ serial: options.serial, model: provisioning.model, batch: provisioning.batch });
    this.thingName = robot.thingName;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.wait = options.wait ?? ((ms) => sleep(ms));
    this.core = {
      parameters: robot.parameters,
      backoff: options.backoff ?? DEFAULT_BACKOFF,
      maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      tokenLifetimeMs: DEFAULT_TOKEN_LIFETIME_MS,
      clockFloorMs: DEFAULT_CLOCK_FLOOR_MS,
    };
    this.journal = new FailureJournal(options.store.files.directory);
  }

  /** Runs the first boot from wherever the stored record is, until it is ready to hand over or gives up. */
  async run(): Promise<FirstBootResult> {
    const { store, log } = this.options;
    const exchanges = new ClaimExchanges(this.options, this.options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS);
    const record = await store.load();
    log.info('provisioning: first boot', { step: record.step, thingName: this.thingName, serial: this.options.serial });
    let transition = start(record, this.now(), this.core);
    try {
      for (;;) {
        await this.persist(transition);
        const { machine, decision } = transition;
        this.machine = machine;
        switch (decision.kind) {
          case 'generate-key': {
            const csrPem = await store.generateKey(this.thingName);
            log.info('provisioning: key made on the robot (0600); its CSR is ready', { keyFile: store.files.keyFile });
            transition = step(machine, { type: 'key-generated', csrPem }, this.now(), this.core, this.random);
            break;
          }
          case 'request-certificate': {
            const event = await exchanges.request('csr', { certificateSigningRequest: decision.csrPem });
            transition = this.after(machine, 'claim', event);
            if (event instanceof ClaimLinkGaveUp) transition = this.endOfBudget(transition);
            else if (event.type === 'csr-accepted') log.info('provisioning: certificate issued', { certificateId: event.certificateId });
            break;
          }
          case 'register-thing': {
            const event = await exchanges.request('register', {
              certificateOwnershipToken: decision.certificateOwnershipToken,
              parameters: decision.parameters,
            });
            transition = await this.afterRegister(machine, event, exchanges);
            break;
          }
          case 'wait':
            await this.note(machine, decision.failure);
            log.warn('provisioning: failed; retrying', { reason: decision.failure.reason, detail: decision.failure.detail, attempt: machine.failures, nextDelayMs: decision.ms });
            await this.wait(decision.ms);
            transition = proceed(machine, this.now(), this.core);
            break;
          case 'give-up':
            await this.note(machine, decision.failure);
            log.error('provisioning: failed; giving up (systemd starts the agent again, which resumes here)', {
              reason: decision.failure.reason,
              detail: decision.failure.detail,
              attempts: machine.failures,
              exitCode: decision.exitCode,
            });
            return { kind: 'gave-up', failure: decision.failure, exitCode: decision.exitCode };
          case 'connect-own':
            await exchanges.close();
            await installOwnCredentials(store, this.options.config, decision.certificatePem);
            log.info('provisioning: registered; connecting with the robot\'s own certificate', {
              thingName: decision.thingName,
              certificateFile: this.options.config.certificateFile,
            });
            return { kind: 'ready', thingName: decision.thingName };
          case 'done':
            if (record.step === 'provisioned') await ensureInstalled(store, this.options.config, record);
            return { kind: 'provisioned', thingName: decision.thingName };
        }
      }
    } finally {
      await exchanges.close();
    }
  }

  /**
   * The agent's link connected with the robot's own certificate: the robot is provisioned (persisted). The failures
   * met on the way are then reported through `failureReports`.
   */
  async confirmConnected(): Promise<void> {
    const machine = this.machine ?? { record: await this.options.store.load(), failures: 0 };
    const transition = step(machine, { type: 'connected' }, this.now(), this.core, this.random);
    await this.persist(transition);
    this.machine = transition.machine;
    if (transition.decision.kind !== 'done') throw new Error(`provisioning: connected while ${machine.record.step}`);
    this.options.log.info('provisioning: done; the robot runs with its own certificate', {
      thingName: transition.decision.thingName,
      certificateId: transition.decision.certificateId,
    });
  }

  /**
   * The agent's link gave up its first connection with the robot's own certificate (LinkGaveUpError): the named
   * reason and exit status, logged and kept for the report of a later run.
   */
  async ownConnectionFailed(problem: ConnectionProblem, message: string): Promise<{ failure: ProvisioningFailure; exitCode: number }> {
    const reason = reasonOfConnectionFailure('own', problem, message);
    const failure = { reason, detail: message };
    await this.note(this.machine ?? { record: await this.options.store.load(), failures: 1 }, failure);
    return { failure, exitCode: failurePolicy(reason).exitCode };
  }

  private after(machine: ProvisioningMachine, credentials: 'claim' | 'own', event: ProvisioningEvent | ClaimLinkGaveUp): Transition {
    const next: ProvisioningEvent =
      event instanceof ClaimLinkGaveUp ? { type: 'connection-failed', credentials, problem: event.problem, message: event.message } : event;
    return step(machine, next, this.now(), this.core, this.random);
  }

  /** The claim link spent its whole first-connection budget retrying: this run stops with the reason's status. */
  private endOfBudget(transition: Transition): Transition {
    const { decision } = transition;
    if (decision.kind !== 'wait') return transition;
    return { ...transition, decision: { kind: 'give-up', failure: decision.failure, exitCode: failurePolicy(decision.failure.reason).exitCode } };
  }

  /**
   * After RegisterThing: a reply or a timeout. A token the cloud refuses as used may have been used by this robot: a
   * RegisterThing carried out whose reply was lost (the link cut, or the agent killed, before it arrived). The robot
   * tries its certificate as its thing first, and goes on registered if the broker admits it (no second certificate,
   * no orphan); only otherwise does it start again from the CSR.
   */
  private async afterRegister(
    machine: ProvisioningMachine,
    event: ProvisioningEvent | ClaimLinkGaveUp,
    exchanges: ClaimExchanges,
  ): Promise<Transition> {
    if (event instanceof ClaimLinkGaveUp) return this.endOfBudget(this.after(machine, 'claim', event));
    if (event.type === 'register-accepted') this.options.log.info('provisioning: thing registered', { thingName: event.thingName });
    const transition = this.after(machine, 'claim', event);
    // The core went back to the CSR because the token was refused: was it refused because it was already used by us?
    const tokenRefused = event.type === 'register-rejected' && transition.machine.record.step === 'key-generated';
    if (!tokenRefused || machine.record.step !== 'certificate-issued') return transition;
    const record = machine.record;
    await exchanges.close();
    if (await this.ownCertificateWorks(record.certificatePem)) {
      this.options.log.info('provisioning: an earlier RegisterThing was carried out (its reply was lost); going on with it', { thingName: this.thingName });
      return step(machine, { type: 'register-accepted', thingName: this.thingName }, this.now(), this.core, this.random);
    }
    return transition;
  }

  /** Whether the broker admits the robot's own certificate as its thing (one connection, cleanly closed). */
  private async ownCertificateWorks(certificatePem: string): Promise<boolean> {
    const { config, store, createLink, log } = this.options;
    // The store wrote certificate.pem with the record that names it; the probe uses the store's own files.
    if (!(await sameCertificateInstalled(store.files.certificateFile, certificatePem))) return false;
    const link = createLink(
      {
        endpoint: config.endpoint,
        port: config.port,
        clientId: this.thingName,
        certificateFile: store.files.certificateFile,
        privateKeyFile: store.files.keyFile,
        caFile: config.caFile,
        keepAliveSeconds: config.keepAliveSeconds,
        reconnect: config.reconnect,
        firstConnectionBudgetSeconds: 1,
      },
      provisioningLinkLog(log.child({ component: 'registration-probe' }), 'registration probe'),
    );
    try {
      await link.start();
      return true;
    } catch {
      return false;
    } finally {
      await link.stop().catch(() => undefined);
    }
  }

  private async persist(transition: Transition): Promise<void> {
    if (!transition.persist) return;
    await this.options.store.save(transition.persist);
    await this.options.afterPersist?.(transition.persist.step);
  }

  private async note(machine: ProvisioningMachine, failure: ProvisioningFailure): Promise<void> {
    await this.journal.add({
      reason: failure.reason,
      detail: failure.detail,
      step: (machine.record as ProvisioningRecord).step,
      at: this.now(),
      attempt: Math.max(1, machine.failures),
    });
  }
}
