import { mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { ROBOT_ID_PATTERN, RobotModel, modelOf } from '../schemas/robot-id.js';
import type { CertificateAuthority, IssuedCertificate } from './certificate-authority.js';

/**
 * The local cloud's IoT registry: which things exist, their model (thing type) and which certificates are attached
 * to each. It lives in `<state>/things.json`, written atomically, so `npm run cert` in one process and the broker in
 * another agree without talking to each other: the broker reads the file again whenever it changed.
 */

const Thing = z.object({
  thingName: z.string().regex(ROBOT_ID_PATTERN),
  model: RobotModel,
  certificateIds: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
  createdAt: z.iso.datetime(),
});
export type Thing = z.infer<typeof Thing>;

/**
 * A certificate's status, as IoT Core keeps it: ACTIVE (the default of every certificate attached here without a
 * record, e.g. by `npm run cert`), INACTIVE, or REVOKED. Only an ACTIVE certificate may connect.
 */
export const CERTIFICATE_STATUSES = ['ACTIVE', 'INACTIVE', 'REVOKED'] as const;
export type CertificateStatus = (typeof CERTIFICATE_STATUSES)[number];
const CertificateRecord = z.object({
  status: z.enum(CERTIFICATE_STATUSES),
  thingName: z.string().regex(ROBOT_ID_PATTERN),
  updatedAt: z.iso.datetime(),
});
export type CertificateRecord = z.infer<typeof CertificateRecord>;

const RegistryFile = z.object({
  version: z.literal(1),
  things: z.record(z.string(), Thing),
  /** Certificates whose status was set (fleet provisioning); absent in registries written before it. */
  certificates: z.record(z.string().regex(/^[0-9a-f]{64}$/), CertificateRecord).default({}),
});
type RegistryFile = z.infer<typeof RegistryFile>;

/** What RegisterThing did to the registry (local/iot-broker/register-thing.ts). */
export interface ThingRegistration {
  readonly thing: Thing;
  /** The thing did not exist before. */
  readonly created: boolean;
  /** The thing's other certificates, now REVOKED (a re-image: the robot lost their keys). */
  readonly revoked: readonly string[];
}

export class InvalidThingName extends Error {
  override readonly name = 'InvalidThingName';
}

export class CorruptRegistryError extends Error {
  override readonly name = 'CorruptRegistryError';
}

/** Checks a thing name the way the factory names robots, with a message that says what a good one looks like. */
export function assertThingName(thingName: string): void {
  if (!ROBOT_ID_PATTERN.test(thingName)) {
    throw new InvalidThingName(
      `"${thingName}" is not a robot name: use <model>-<serial> with model lekiwi or xle and a serial of letters, ` +
        'digits, _ or - (for example lekiwi-LK0001 or xle-XL0007)',
    );
  }
}

/**
 * INVARIANTS
 * - every write replaces the file atomically (temp file + rename), and this instance's writes run one at a time
 *   (`writing`), each on the file as the previous one left it: concurrent RegisterThings lose no update;
 * - across instances and processes (`npm run cert` twice at once, the broker and the certificate retirer), each
 *   read-modify-write holds `things.json.lock` (created with O_EXCL) and reads the file afresh under it: no writer
 *   works on a copy another has since replaced. A lock whose holder died (its pid is gone) or that is older than
 *   LOCK_STALE_MS is broken;
 * - a certificate may connect as a thing only while attached to it and ACTIVE (`isAttached`); a REVOKED one never
 *   becomes ACTIVE again, and stays listed on its thing (its history).
 */
export class ThingRegistry {
  private cache: { mtimeMs: number; file: RegistryFile } | undefined;
  private writing: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  /** The registry of a state dir. */
  static in(stateDir: string): ThingRegistry {
    return new ThingRegistry(join(stateDir, 'things.json'));
  }

  /** The thing, read from the file as it is now (cached while the file is unchanged). */
  async lookup(thingName: string): Promise<Thing | undefined> {
    return (await this.read()).things[thingName];
  }

  async list(): Promise<Thing[]> {
    return Object.values((await this.read()).things).sort((a, b) => a.thingName.localeCompare(b.thingName));
  }

  /**
   * Whether `certificateId` is attached to `thingName` and ACTIVE: what IoT Core checks before a policy variable can
   * name it (an inactive or revoked certificate is refused at connect).
   */
  async isAttached(thingName: string, certificateId: string): Promise<boolean> {
    const file = await this.read();
    if (!(file.things[thingName]?.certificateIds.includes(certificateId) ?? false)) return false;
    return statusIn(file, certificateId) === 'ACTIVE';
  }

  /** The certificate's status: ACTIVE unless set otherwise; undefined for a certificate no thing has. */
  async certificateStatus(certificateId: string): Promise<CertificateStatus | undefined> {
    const file = await this.read();
    const known = file.certificates[certificateId] ?? Object.values(file.things).find((thing) => thing.certificateIds.includes(certificateId));
    return known ? statusIn(file, certificateId) : undefined;
  }

  /**
   * Fleet provisioning's RegisterThing, as the template does it: creates the thing `thingName` if new (kept if not,
   * with its history), attaches `certificateId` and makes it ACTIVE, and REVOKES every other certificate of the thing
   * (a robot provisions again only after losing its key: a re-image). Refused for a certificate already revoked.
   */
  async registerThing(thingName: string, certificateId: string, now = new Date()): Promise<ThingRegistration> {
    assertThingName(thingName);
    return this.write((file) => {
      if (statusIn(file, certificateId) === 'REVOKED') {
        throw new Error(`certificate ${certificateId} is revoked: it cannot be registered again`);
      }
      const existing = file.things[thingName];
      const at = now.toISOString();
      const thing: Thing = existing
        ? { ...existing, certificateIds: [...new Set([...existing.certificateIds, certificateId])] }
        : { thingName, model: modelOf(thingName), certificateIds: [certificateId], createdAt: at };
      const revoked = thing.certificateIds.filter((id) => id !== certificateId && statusIn(file, id) !== 'REVOKED');
      const certificates = { ...file.certificates, [certificateId]: { status: 'ACTIVE' as const, thingName, updatedAt: at } };
      for (const id of revoked) certificates[id] = { status: 'REVOKED', thingName, updatedAt: at };
      return { next: { ...file, things: { ...file.things, [thingName]: thing }, certificates }, result: { thing, created: !existing, revoked } };
    });
  }

  /**
   * Certificate rotation (functions/app/certificate-rotation.ts): the certificate's standing on `thingName`: attached
   * and ACTIVE, attached but INACTIVE or REVOKED, or not attached.
   */
  async standing(thingName: string, certificateId: string): Promise<'active' | 'inactive' | 'not-attached'> {
    const file = await this.read();
    if (!(file.things[thingName]?.certificateIds.includes(certificateId) ?? false)) return 'not-attached';
    return statusIn(file, certificateId) === 'ACTIVE' ? 'active' : 'inactive';
  }

  /**
   * Rotation's last step (AWS: UpdateCertificate INACTIVE + DetachThingPrincipal): the certificate becomes INACTIVE, so
   * the broker refuses it from then on. It stays listed on its thing as history, like a revoked one. A REVOKED
   * certificate stays REVOKED; an unknown pair changes nothing.
   */
  async deactivate(thingName: string, certificateId: string, now = new Date()): Promise<void> {
    await this.write((file) => {
      if (!(file.things[thingName]?.certificateIds.includes(certificateId) ?? false) || statusIn(file, certificateId) !== 'ACTIVE') {
        return { next: file, result: undefined };
      }
      const certificates = { ...file.certificates, [certificateId]: { status: 'INACTIVE' as const, thingName, updatedAt: now.toISOString() } };
      return { next: { ...file, certificates }, result: undefined };
    });
  }

  /**
   * A re-image's superseded certificate (the certificate retirer, functions/app/retire-certificates.ts; AWS:
   * UpdateCertificate REVOKED + DetachThingPrincipal): REVOKED, kept on its thing as history (only ACTIVE ones may
   * connect, so listed is not usable). RegisterThing has usually revoked it already; then, as for an unknown pair,
   * nothing changes.
   */
  async revoke(thingName: string, certificateId: string, now = new Date()): Promise<void> {
    await this.write((file) => {
      if (!(file.things[thingName]?.certificateIds.includes(certificateId) ?? false) || statusIn(file, certificateId) === 'REVOKED') {
        return { next: file, result: undefined };
      }
      const certificates = { ...file.certificates, [certificateId]: { status: 'REVOKED' as const, thingName, updatedAt: now.toISOString() } };
      return { next: { ...file, certificates }, result: undefined };
    });
  }

  /** Creates the thing if new (model from its name) and attaches the certificate. */
  async attach(thingName: string, certificateId: string, now = new Date()): Promise<Thing> {
    const [thing] = await this.attachAll([{ thingName, certificateId }], now);
    return thing!;
  }

  /** `attach` for many things in one write (a simulated fleet, a benchmark's thousand robots). */
  async attachAll(attachments: readonly { thingName: string; certificateId: string }[], now = new Date()): Promise<Thing[]> {
    for (const { thingName } of attachments) assertThingName(thingName);
    return this.write((file) => {
      const things = { ...file.things };
      const attached = attachments.map(({ thingName, certificateId }) => {
        const existing = things[thingName];
        const thing: Thing = existing
          ? { ...existing, certificateIds: [...new Set([...existing.certificateIds, certificateId])] }
          : { thingName, model: modelOf(thingName), certificateIds: [certificateId], createdAt: now.toISOString() };
        things[thingName] = thing;
        return thing;
      });
      return { next: { ...file, things }, result: attached };
    });
  }

  /** One read-modify-write of the file, after every earlier write of this instance. */
  private write<T>(change: (file: RegistryFile) => { next: RegistryFile; result: T }): Promise<T> {
    const run = async (): Promise<T> => {
      await mkdir(dirname(this.path), { recursive: true });
      const release = await acquireLock(`${this.path}.lock`);
      try {
        this.cache = undefined;
        const current = await this.read();
        const { next, result } = change(current);
        if (next === current) return result; // nothing changed: the file (and its mtime, the broker's cue) stays
        const temporary = `${this.path}.${process.pid}.${(temporaryCount += 1)}.tmp`;
        await writeFile(temporary, `${JSON.stringify(next, null, 2)}\n`);
        await rename(temporary, this.path);
        this.cache = undefined;
        return result;
      } finally {
        await release();
      }
    };
    const done = this.writing.then(run, run);
    this.writing = done.catch(() => undefined);
    return done;
  }

  private async read(): Promise<RegistryFile> {
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(this.path)).mtimeMs;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, things: {}, certificates: {} };
      throw error;
    }
    if (this.cache?.mtimeMs === mtimeMs) return this.cache.file;
    const text = await readFile(this.path, 'utf8');
    let parsed;
    try {
      parsed = RegistryFile.safeParse(JSON.parse(text));
    } catch (error) {
      throw new CorruptRegistryError(`${this.path} is not JSON (${(error as Error).message}); fix or delete it`);
    }
    if (!parsed.success) {
      const problem = parsed.error.issues[0];
      throw new CorruptRegistryError(
        `${this.path} is not a thing registry (${problem?.path.join('.') || '(file)'}: ${problem?.message}); fix or delete it`,
      );
    }
    this.cache = { mtimeMs, file: parsed.data };
    return parsed.data;
  }
}

let temporaryCount = 0;

/** A lock older than this is taken for abandoned (a write holds it for milliseconds). */
export const LOCK_STALE_MS = 10_000;

/**
 * Takes the lock file (O_CREAT | O_EXCL: exactly one creator wins), waiting with jittered pauses while another holds
 * it; breaks it when its holder's pid is gone or it is older than LOCK_STALE_MS. Resolves to its release.
 */
async function acquireLock(lockPath: string): Promise<() => Promise<void>> {
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => unlink(lockPath).catch(() => undefined);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (await lockIsStale(lockPath)) {
      await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (attempt > 2_000) throw new Error(`${lockPath} has been held too long; delete it if no \`npm run cert\` or local cloud is running`);
    await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * Math.min(50, 2 ** Math.min(attempt, 6))));
  }
}

async function lockIsStale(lockPath: string): Promise<boolean> {
  try {
    const [text, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    if (Date.now() - info.mtimeMs > LOCK_STALE_MS) return true;
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now
    if (pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    return false; // gone already: the next attempt takes it
  }
}

function statusIn(file: RegistryFile, certificateId: string): CertificateStatus {
  return file.certificates[certificateId]?.status ?? 'ACTIVE';
}

/** Where a robot's credentials are written, and the agent config that uses them. */
export interface ThingCredentials {
  readonly thing: Thing;
  readonly directory: string;
  readonly certificateFile: string;
  readonly privateKeyFile: string;
  readonly caFile: string;
  readonly agentConfigFile: string;
  readonly certificate: IssuedCertificate;
}

export interface ProvisionOptions {
  /** The MQTT endpoint written into the agent config. Default localhost:8883. */
  readonly endpoint?: string;
  readonly port?: number;
  readonly keepAliveSeconds?: number;
}

/**
 * `npm run cert -- <thingName>`: issues a certificate and key from the local CA into `<state>/certs/<thingName>/`
 * (named as IoT Core's console names them), copies the CA certificate beside them, registers the thing with the
 * certificate attached, and writes an `agent.json` that `npm run agent -- --config` accepts.
 */
export async function provisionThing(
  stateDir: string,
  ca: CertificateAuthority,
  thingName: string,
  options: ProvisionOptions = {},
): Promise<ThingCredentials> {
  assertThingName(thingName);
  const certificate = await ca.issueClientCertificate(thingName);
  const directory = join(stateDir, 'certs', thingName);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const certificateFile = join(directory, 'certificate.pem.crt');
  const privateKeyFile = join(directory, 'private.pem.key');
  const caFile = join(directory, 'ca.pem');
  const agentConfigFile = join(directory, 'agent.json');
  await writeFile(certificateFile, certificate.certificatePem, { mode: 0o644 });
  await writeFile(privateKeyFile, certificate.privateKeyPem, { mode: 0o600 });
  await writeFile(caFile, ca.certificatePem, { mode: 0o644 });
  const agentConfig = {
    endpoint: options.endpoint ?? 'localhost',
    port: options.port ?? 8883,
    thingName,
    certificateFile,
    privateKeyFile,
    caFile,
    keepAliveSeconds: options.keepAliveSeconds ?? 30,
    // IoT Core takes 30–1200 s; shorter only makes sense against the local broker (tests see a dead robot sooner).
    ...((options.keepAliveSeconds ?? 30) < 30 ? { allowShortKeepAlive: true } : {}),
    stateDir: join(directory, 'agent-state'),
  };
  await writeFile(agentConfigFile, `${JSON.stringify(agentConfig, null, 2)}\n`);
  const thing = await ThingRegistry.in(stateDir).attach(thingName, certificate.certificateId);
  return { thing, directory, certificateFile, privateKeyFile, caFile, agentConfigFile, certificate };
}
