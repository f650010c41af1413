import { createHash, generateKeyPairSync, randomUUID, X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { AgentEvent } from '../schemas/device.js';
import {
  CertificateIssuedReply,
  CertificateRotatedReply,
  ROTATION_COMMANDS,
  RotateCertificateCommand,
  rotationTopics,
  type CertificateRotationConfirm,
  type CertificateRotationRequest,
} from '../schemas/rotation.js';
import { replaceFileAtomically, TEMPORARY_SUFFIX } from './adapters/durable-file.js';
import type { Logger } from './adapters/json-log.js';
import { derCsrBuilder } from './adapters/provisioning-store.js';
import type { LinkCredentials, SwitchOutcome } from './adapters/rotating-link.js';
import type { QoS } from './adapters/mqtt-link.js';
import {
  activeCredentials,
  decide,
  isDue,
  NO_ROTATION,
  type Credentials,
  type RotationAction,
  type RotationContext,
  type RotationEvent,
  type RotationRecord,
} from './core/certificate-rotation.js';

/**
 * The driver of certificate rotation (issue 11, item 4; the decisions are agent/core/certificate-rotation.ts, the
 * messages schemas/rotation.ts). It keeps the record in `<stateDir>/certificate-rotation/state.json`, each new key
 * (`<requestId>.key`, 0600) and certificate (`<requestId>.pem`) beside it, every file replaced atomically
 * (agent/adapters/durable-file.ts); runs the actions the core decides; and arms the timers (the reply timeout, the
 * confirm's resend, the daily expiry check).
 *
 * INVARIANTS
 * - The record is written BEFORE the actions of its transition run: a power cut resumes from what is on disk.
 * - Events are handled one at a time, in arrival order (`serial`).
 * - The private key is written by this process only, mode 0600, and read only to check that the certificate the
 *   cloud sent is its pair: it appears in no message, log line or event.
 */

export interface RotationSettings {
  /** Rotate when the certificate expires within this many days. */
  readonly rotateBeforeDays: number;
  /** How long the new certificate may take to connect before the robot stays on the old one. */
  readonly connectTimeoutMs: number;
  /** How long to wait for the cloud's certificate. */
  readonly replyTimeoutMs: number;
  /** How often the confirm is sent again until the cloud answers it. */
  readonly confirmResendMs: number;
  /** How often the expiry is checked (besides at start). */
  readonly checkIntervalMs: number;
}

export const DEFAULT_ROTATION_SETTINGS: RotationSettings = {
  rotateBeforeDays: 30,
  connectTimeoutMs: 60_000,
  replyTimeoutMs: 30_000,
  confirmResendMs: 30_000,
  checkIntervalMs: 24 * 3_600_000,
};

/** What the driver needs of the link: publish, and move to other credentials (agent/adapters/rotating-link.ts). */
export interface RotationLink {
  publish(topic: string, payload: string, qos: QoS): Promise<void>;
  switchTo(credentials: LinkCredentials, timeoutMs: number): Promise<SwitchOutcome>;
}

export interface CertificateRotationOptions {
  readonly thingName: string;
  readonly stateDir: string;
  /** The config's certificateFile/privateKeyFile: what the robot uses until its first rotation. */
  readonly baseCredentials: LinkCredentials;
  readonly link: RotationLink;
  /** Queues an event in the agent's outbox (agent.report). */
  readonly report: (event: AgentEvent) => Promise<void>;
  readonly settings?: Partial<RotationSettings>;
  readonly log: Logger;
  readonly now?: () => number;
}

const Stored = z
  .object({
    active: z.object({ certificateId: z.string(), certificateFile: z.string(), privateKeyFile: z.string() }).strict().nullable(),
    pending: z
      .object({
        step: z.enum(['requested', 'issued', 'confirming']),
        requestId: z.string(),
        trigger: z.enum(['expiry', 'command', 'resume']),
        startedAt: z.number(),
        previousCertificateId: z.string(),
        keyFile: z.string(),
        csrPem: z.string().optional(),
        certificateId: z.string().optional(),
        certificateFile: z.string().optional(),
      })
      .strict()
      .nullable(),
  })
  .strict();

/** The folder of a state dir where rotation keeps its record and files. */
export function rotationDirectory(stateDir: string): string {
  return join(stateDir, 'certificate-rotation');
}

/** The record on disk (NO_ROTATION if none). Throws naming the file for a corrupt one. */
export async function loadRotationRecord(stateDir: string): Promise<RotationRecord> {
  const file = join(rotationDirectory(stateDir), 'state.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return NO_ROTATION;
    throw error;
  }
  const parsed = Stored.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${file} is not a rotation record (${parsed.error.issues[0]?.message}); move it aside (the robot then uses agent.json's certificate)`);
  return parsed.data as RotationRecord;
}

/**
 * The credentials the agent must connect with at start: the last certificate it rotated to, else the config's. (A
 * rotation stored but not yet connected starts on the old pair, which is still active, and switches at once.)
 */
export async function startingCredentials(stateDir: string, base: LinkCredentials): Promise<LinkCredentials> {
  const record = await loadRotationRecord(stateDir);
  return record.active ? { certificateFile: record.active.certificateFile, privateKeyFile: record.active.privateKeyFile } : base;
}

/** IoT's certificate id of a PEM certificate: SHA-256 of its DER, hex. */
export function certificateIdOfPem(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

export class CertificateRotation {
  private readonly directory: string;
  private readonly settings: RotationSettings;
  private readonly now: () => number;
  private record: RotationRecord = NO_ROTATION;
  private context!: RotationContext;
  private queue: Promise<void> = Promise.resolve();
  private readonly timers = new Set<NodeJS.Timeout>();
  private replyTimer: NodeJS.Timeout | undefined;
  private confirmTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: CertificateRotationOptions) {
    this.directory = rotationDirectory(options.stateDir);
    this.settings = { ...DEFAULT_ROTATION_SETTINGS, ...options.settings };
    this.now = options.now ?? Date.now;
  }

  /** The commands the agent routes here (agent.ts `commands`). */
  get commands(): Record<string, (body: unknown) => void> {
    return {
      [ROTATION_COMMANDS.rotate]: (body) => this.onRotate(body),
      [ROTATION_COMMANDS.issued]: (body) => this.onIssued(body),
      [ROTATION_COMMANDS.rotated]: (body) => this.onRotated(body),
    };
  }

  /** The rotation under way, if any (tests, logs). */
  get pending(): RotationRecord['pending'] {
    return this.record.pending;
  }

  get active(): Credentials {
    return activeCredentials(this.record, this.context);
  }

  /** Loads the record, resumes a rotation under way, checks the expiry now and then every checkIntervalMs. */
  async start(): Promise<void> {
    const basePem = await readFile(this.options.baseCredentials.certificateFile, 'utf8');
    this.context = { baseCredentials: { ...this.options.baseCredentials, certificateId: certificateIdOfPem(basePem) } };
    this.record = await loadRotationRecord(this.options.stateDir);
    await this.handle({ type: 'resume' });
    await this.checkExpiry();
    const timer = setInterval(() => void this.checkExpiry(), this.settings.checkIntervalMs);
    timer.unref();
    this.timers.add(timer);
  }

  /** Starts a rotation now (what `rotate-certificate` does); resolves once its first step is taken. */
  rotate(requestId: string = `rotation-${randomUUID()}`, trigger: 'command' | 'expiry' = 'command'): Promise<void> {
    return this.handle({ type: 'trigger', requestId, trigger });
  }

  /** Resolves when every event so far is handled (tests). */
  idle(): Promise<void> {
    return this.queue;
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.replyTimer);
    clearTimeout(this.confirmTimer);
  }

  private async checkExpiry(): Promise<void> {
    if (this.stopped || this.record.pending) return;
    try {
      const pem = await readFile(this.active.certificateFile, 'utf8');
      const notAfter = Date.parse(new X509Certificate(pem).validTo);
      if (isDue(notAfter, this.now(), this.settings.rotateBeforeDays)) {
        this.options.log.info('certificate expires soon: rotating', { notAfter: new Date(notAfter).toISOString(), rotateBeforeDays: this.settings.rotateBeforeDays });
        await this.rotate(`expiry-${randomUUID()}`, 'expiry');
      }
    } catch (error) {
      this.options.log.warn('certificate expiry check failed', { error });
    }
  }

  private onRotate(body: unknown): void {
    const command = RotateCertificateCommand.safeParse(body);
    if (!command.success) return this.options.log.warn('rotate-certificate ignored: no valid requestId', {});
    void this.rotate(command.data.requestId, 'command');
  }

  private onIssued(body: unknown): void {
    const reply = CertificateIssuedReply.safeParse(body);
    if (!reply.success) return this.options.log.warn('certificate-issued ignored: not a valid reply', {});
    void this.serial(async () => {
      const pending = this.record.pending;
      const data = reply.data;
      if (!pending || pending.requestId !== data.requestId || pending.step !== 'requested') {
        return this.options.log.info('certificate-issued for no rotation waiting for it', { requestId: data.requestId });
      }
      clearTimeout(this.replyTimer);
      if ('rejected' in data) {
        return this.apply({ type: 'rejected', requestId: data.requestId, reason: data.rejected.reason, message: data.rejected.message });
      }
      const certificateFile = join(this.directory, `${data.requestId}.pem`);
      try {
        const certificate = new X509Certificate(data.certificatePem);
        const key = createPrivateKey(await readFile(pending.keyFile, 'utf8'));
        if (!certificate.checkPrivateKey(key) || certificateIdOfPem(data.certificatePem) !== data.certificateId) {
          return this.apply({ type: 'failed', requestId: data.requestId, reason: 'CERTIFICATE_MISMATCH', detail: 'the certificate is not the new key\'s, or not the id the cloud named' });
        }
      } catch (error) {
        return this.apply({ type: 'failed', requestId: data.requestId, reason: 'CERTIFICATE_MISMATCH', detail: `unreadable certificate: ${(error as Error).message}` });
      }
      try {
        await replaceFileAtomically(certificateFile, data.certificatePem, 0o644);
      } catch (error) {
        return this.apply({ type: 'failed', requestId: data.requestId, reason: 'STORAGE_FAILED', detail: (error as Error).message });
      }
      await this.apply({ type: 'issued', requestId: data.requestId, certificateId: data.certificateId, certificateFile });
    });
  }

  private onRotated(body: unknown): void {
    const reply = CertificateRotatedReply.safeParse(body);
    if (!reply.success) return this.options.log.warn('certificate-rotated ignored: not a valid reply', {});
    const data = reply.data;
    void this.handle(
      'rejected' in data
        ? { type: 'confirm-rejected', requestId: data.requestId, reason: data.rejected.reason, message: data.rejected.message }
        : { type: 'rotated', requestId: data.requestId },
    );
  }

  private handle(event: RotationEvent): Promise<void> {
    return this.serial(() => this.apply(event));
  }

  /** Runs `work` after everything queued before it; a failure is logged, never breaks the queue. */
  private serial(work: () => Promise<void>): Promise<void> {
    const run = this.queue.then(work).catch((error: unknown) => this.options.log.error('certificate rotation step failed', { error }));
    this.queue = run;
    return run;
  }

  /** Decides, persists, acts. Only ever called inside `serial`. */
  private async apply(event: RotationEvent): Promise<void> {
    if (this.stopped) return;
    const transition = decide(this.record, event, this.context);
    if (transition.record) {
      await this.save(transition.record);
      this.record = transition.record;
    }
    for (const action of transition.actions) await this.act(action);
  }

  private async act(action: RotationAction): Promise<void> {
    const { log, link, thingName } = this.options;
    switch (action.type) {
      case 'generate-key': {
        const keyFile = join(this.directory, `${action.requestId}.key`);
        let csrPem: string;
        try {
          const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
          csrPem = derCsrBuilder.build({ privateKey, publicKey }, thingName);
          await mkdir(this.directory, { recursive: true, mode: 0o700 });
          await replaceFileAtomically(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
        } catch (error) {
          log.error('certificate rotation: the new key could not be made', { requestId: action.requestId, error });
          return this.reportFailure(action.requestId, 'STORAGE_FAILED', (error as Error).message, this.active.certificateId);
        }
        log.info('certificate rotation started', { requestId: action.requestId, trigger: action.trigger });
        return this.apply({
          type: 'key-ready',
          requestId: action.requestId,
          trigger: action.trigger,
          keyFile,
          csrPem,
          previousCertificateId: this.active.certificateId,
          at: this.now(),
        });
      }
      case 'publish-request': {
        const message: CertificateRotationRequest = { requestId: action.requestId, csr: action.csrPem, currentCertificateId: action.currentCertificateId };
        clearTimeout(this.replyTimer);
        this.replyTimer = setTimeout(() => void this.handle({ type: 'reply-timeout', requestId: action.requestId }), this.settings.replyTimeoutMs);
        try {
          await link.publish(rotationTopics.request(thingName), JSON.stringify(message), 1);
        } catch (error) {
          log.warn('certificate request not sent; the reply timeout will end this rotation', { requestId: action.requestId, error });
        }
        return;
      }
      case 'connect-new': {
        log.info('connecting with the new certificate', { requestId: action.requestId, certificateId: action.credentials.certificateId });
        const outcome = await link.switchTo(action.credentials, this.settings.connectTimeoutMs);
        return this.apply(
          outcome.ok
            ? { type: 'new-connected', requestId: action.requestId }
            : { type: 'new-refused', requestId: action.requestId, detail: `the new certificate did not connect: ${outcome.detail}` },
        );
      }
      case 'publish-confirm': {
        const message: CertificateRotationConfirm = {
          requestId: action.requestId,
          certificateId: action.certificateId,
          previousCertificateId: action.previousCertificateId,
        };
        clearTimeout(this.confirmTimer);
        this.confirmTimer = setTimeout(() => void this.handle({ type: 'resume' }), this.settings.confirmResendMs);
        try {
          await link.publish(rotationTopics.confirm(thingName), JSON.stringify(message), 1);
        } catch (error) {
          log.warn('confirm not sent; it is sent again', { requestId: action.requestId, error });
        }
        return;
      }
      case 'report-failure':
        return this.reportFailure(action.requestId, action.reason, action.detail, action.certificateId, action.abandonedCertificateId);
      case 'discard':
        for (const file of action.files) await rm(file, { force: true });
        return;
      case 'prune':
        clearTimeout(this.confirmTimer);
        log.info('certificate rotated: the previous certificate is inactive', { certificateId: this.active.certificateId });
        return this.prune();
      case 'ignore':
        log.info(`certificate rotation: ${action.why}`, {});
        return;
    }
  }

  private async reportFailure(requestId: string, reason: string, detail: string, certificateId: string, abandonedCertificateId?: string): Promise<void> {
    this.options.log.error('certificate rotation failed; staying on the current certificate', { requestId, reason, detail });
    try {
      await this.options.report({
        eventId: `rotation-failed:${requestId}`.slice(0, 128),
        occurredAt: new Date(this.now()).toISOString(),
        type: 'CertificateRotationFailed',
        data: {
          requestId,
          reason,
          detail: detail.slice(0, 500),
          ...(/^[0-9a-f]{64}$/.test(certificateId) ? { certificateId } : {}),
          ...(abandonedCertificateId && /^[0-9a-f]{64}$/.test(abandonedCertificateId) ? { abandonedCertificateId } : {}),
        },
      });
    } catch (error) {
      this.options.log.warn('CertificateRotationFailed could not be queued', { requestId, error });
    }
  }

  /** Removes the folder's keys and certificates that the record no longer names. */
  private async prune(): Promise<void> {
    const { active, pending } = this.record;
    const keep = new Set([active?.certificateFile, active?.privateKeyFile, pending?.keyFile, pending && 'certificateFile' in pending ? pending.certificateFile : undefined]);
    const names = await readdir(this.directory).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(this.directory, name);
      if ((name.endsWith('.key') || name.endsWith('.pem') || name.endsWith(TEMPORARY_SUFFIX)) && !keep.has(path)) await rm(path, { force: true });
    }
  }

  private async save(record: RotationRecord): Promise<void> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    await replaceFileAtomically(join(this.directory, 'state.json'), `${JSON.stringify(record, null, 2)}\n`, 0o600);
  }
}
