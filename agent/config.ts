import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { InstallFailureReason, InstallStep } from '../schemas/deployments.js';
import { BatchId, PROVISIONING_TEMPLATE_NAME_PATTERN } from '../schemas/provisioning.js';
import { ROBOT_ID_PATTERN, RobotModel } from '../schemas/robot-id.js';
import { TOPIC_RULES } from '../schemas/topics.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from './adapters/json-log.js';
import { DEFAULT_DELIVERY_SETTINGS } from './core/outbox-delivery.js';
import { TelemetryPolicyConfig, telemetryPolicyConfig } from './core/telemetry-policy.js';
import { TeleoperationConfig, teleoperationConfig } from './core/teleoperation-config.js';

/**
 * The agent's configuration file (`agent.json`, as `npm run cert` / local/thing-registry.ts writes it and as a robot's
 * installer writes it for AWS). Loading it checks everything the agent will need before anything connects: each
 * mistake is reported with the field or file to fix, rather than as a TLS error minutes later. Relative paths resolve
 * against the config file's folder, so a credentials folder can be moved as a whole.
 */

/** AWS IoT Core refuses a keep-alive outside 30–1200 s (it would clamp it silently at the low end). */
export const IOT_KEEP_ALIVE_MIN_SECONDS = 30;
export const IOT_KEEP_ALIVE_MAX_SECONDS = 1200;

export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
  constructor(
    message: string,
    readonly problems: readonly { field: string; message: string }[] = [],
  ) {
    super(message);
  }
}

const filePath = z.string().min(1, 'must be a file path');

/** Every TeleoperationConfig field, optional (zod cannot `.partial()` a schema with refinements). */
function teleoperationOverrides() {
  const shape = TeleoperationConfig.shape;
  return Object.fromEntries(Object.entries(shape).map(([key, schema]) => [key, schema.optional()])) as {
    [K in keyof typeof shape]: z.ZodOptional<(typeof shape)[K]>;
  };
}

const AgentConfigFile = z
  .object({
    /** The IoT Core data endpoint (`xxxx-ats.iot.<region>.amazonaws.com`) or the local broker's host. */
    endpoint: z.string().min(1, 'must be a host name, e.g. xxxx-ats.iot.eu-west-1.amazonaws.com'),
    port: z.number().int().min(1).max(65_535).default(8883),
    thingName: z.string().regex(ROBOT_ID_PATTERN, 'must be <model>-<serial> with model lekiwi or xle, e.g. lekiwi-LK0001'),
    /** IoT Core's thing policy only admits client id = thing name; a different one is a configuration mistake. */
    clientId: z.string().optional(),
    certificateFile: filePath,
    privateKeyFile: filePath,
    /** The CA that signed the broker's certificate (AmazonRootCA1.pem on AWS); default: the system's trust store. */
    caFile: filePath.optional(),
    keepAliveSeconds: z.number().int().positive().max(IOT_KEEP_ALIVE_MAX_SECONDS).default(IOT_KEEP_ALIVE_MIN_SECONDS),
    /** Lets keepAliveSeconds go below IoT Core's 30 s, for local tests that need a dropped link noticed quickly. */
    allowShortKeepAlive: z.boolean().default(false),
    /** Where the agent keeps its offline event queue (`<stateDir>/queue`). */
    stateDir: filePath,
    /** Telemetry to the rule through Basic Ingest (no messaging charge); false publishes on the plain topic. */
    basicIngest: z.boolean().default(true),
    /**
     * The telemetry rule Basic Ingest publishes to. Each deployed stage has its own (`heartbeat_telemetry_<stage>`,
     * the Iot stack's TelemetryRuleName output; schemas/topics.ts `topicRuleName`); default: the local cloud's.
     */
    telemetryRule: z
      .string()
      .regex(/^[a-zA-Z0-9_]{1,128}$/, 'must be an IoT rule name (letters, digits, _), e.g. heartbeat_telemetry_prod')
      .default(TOPIC_RULES.telemetry.name),
    telemetry: z
      .object({
        sampleIntervalMs: z.number().int().min(100).max(3_600_000).default(1_000),
        // The policy's own field schemas, each optional (the defaults fill in the rest).
        minIntervalMs: TelemetryPolicyConfig.shape.minIntervalMs.optional(),
        maxIntervalMs: TelemetryPolicyConfig.shape.maxIntervalMs.optional(),
        deadbands: TelemetryPolicyConfig.shape.deadbands.partial().optional(),
      })
      .strict()
      .default({ sampleIntervalMs: 1_000 }),
    /**
     * How long the agent tries to make its *first* connection before it exits (78 for a setup problem: credentials,
     * CA, a certificate the broker refuses, the clock; 69 when the endpoint cannot be reached), so that systemd
     * restarts it and the journal says why. After the first connection, outages never end the agent.
     */
    firstConnectionBudgetSeconds: z.number().int().min(1).max(86_400).default(60),
    /** The SDK's reconnect delays after a dropped link, and the first connection's backoff ceiling. */
    reconnect: z
      .object({
        minSeconds: z.number().int().min(1).max(3_600).default(1),
        maxSeconds: z.number().int().min(1).max(3_600).default(120),
      })
      .strict()
      .refine((r) => r.minSeconds <= r.maxSeconds, { path: ['maxSeconds'], message: 'must be at least minSeconds' })
      .default({ minSeconds: 1, maxSeconds: 120 }),
    logLevel: z.enum(LOG_LEVELS).optional(),
    /**
     * Zero-touch provisioning by claim (issue 11), as the factory's boot bundle writes it (`npm run factory -- bundle`):
     * the batch's claim credentials and where the robot's serial comes from. With it, a robot without a certificate of
     * its own (certificateFile absent, or a first boot under way in `<stateDir>/provisioning`) provisions itself first
     * (agent/provisioning-driver.ts), then installs its certificate at certificateFile and its key at privateKeyFile.
     */
    provisioning: z
      .object({
        /** The fleet provisioning template RegisterThing calls (schemas/provisioning.ts `provisioningTemplateName`). */
        templateName: z.string().regex(PROVISIONING_TEMPLATE_NAME_PATTERN, 'must be 1–36 letters, digits, "_" or "-", e.g. heartbeat-prod-claim'),
        claimCertificateFile: filePath,
        claimPrivateKeyFile: filePath,
        /**
         * The serial: `raspberry-pi` (the SoC serial, /proc/device-tree/serial-number, else /proc/cpuinfo's Serial),
         * or `{ "file": path }` (its first line; tests and robots without one).
         */
        serialSource: z.union([z.literal('raspberry-pi'), z.object({ file: filePath }).strict()]),
        model: RobotModel,
        batch: BatchId,
      })
      .strict()
      .optional(),
    /**
     * Certificate rotation (agent/certificate-rotation.ts): the robot rotates by itself when its certificate expires
     * within `rotateBeforeDays` (checked at start and daily), and on the cloud's command; a new certificate that does
     * not connect within `connectTimeoutSeconds` is given up and the robot stays on the old one.
     */
    certificate: z
      .object({
        rotateBeforeDays: z.number().int().min(1).max(3_650).default(30),
        connectTimeoutSeconds: z.number().int().min(5).max(600).default(60),
      })
      .strict()
      .default({ rotateBeforeDays: 30, connectTimeoutSeconds: 60 }),
    /**
     * How events reach the cloud (agent/core/outbox-delivery.ts). Each queued event stays on disk until the cloud's
     * EventsAck covers it; meanwhile up to `maxInFlightBatches` messages (of up to 100 events each) may await their
     * acknowledgement. With no acknowledgement progress for `ackTimeoutMs`, everything unacknowledged is sent again in
     * order; repeated timeouts double that wait (with jitter) up to 60 s.
     */
    delivery: z
      .object({
        maxInFlightBatches: z.number().int().min(1).max(64).default(DEFAULT_DELIVERY_SETTINGS.maxInFlightBatches),
        ackTimeoutMs: z.number().int().min(100).max(DEFAULT_DELIVERY_SETTINGS.maxAckTimeoutMs).default(DEFAULT_DELIVERY_SETTINGS.ackTimeoutMs),
      })
      .strict()
      .default({
        maxInFlightBatches: DEFAULT_DELIVERY_SETTINGS.maxInFlightBatches,
        ackTimeoutMs: DEFAULT_DELIVERY_SETTINGS.ackTimeoutMs,
      }),
    /**
     * Teleoperation detection (agent/teleoperation-monitor.ts). Any TeleoperationConfig field (ports, process
     * names, windows) may be overridden here; the rest keep the LeRobot defaults.
     */
    teleoperation: z
      .object({
        enabled: z.boolean().default(true),
        /** Milliseconds between readings; 33 is one LeKiwi action period. */
        tickMs: z.number().int().min(10).max(10_000).default(33),
        /** Milliseconds between readings while nobody is connected (≥ tickMs). */
        idleTickMs: z.number().int().min(10).max(10_000).default(100),
        /** Where /proc is (tests point it elsewhere). */
        procRoot: filePath.default('/proc'),
        /** The interpreter for the sock_diag co-process; without one, detection sees peers only. */
        python: z.string().min(1).default('python3'),
      })
      .extend(teleoperationOverrides())
      .strict()
      .refine((t) => t.idleTickMs >= t.tickMs, { path: ['idleTickMs'], message: 'must be at least tickMs' })
      .default({ enabled: true, tickMs: 33, idleTickMs: 100, procRoot: '/proc', python: 'python3' }),
    /**
     * Software updates (agent/installer.ts): where versions live, how to restart the services after a switch, what
     * proves them healthy (besides the agent still being connected), and a fault to inject on purpose.
     */
    install: z
      .object({
        /** The software root (objects/, versions/, current); default `<stateDir>/software`. */
        root: filePath.optional(),
        /** Shell commands run in the new version's folder after the switch (and after a switch back). */
        restart: z.array(z.string().min(1, 'must be a shell command')).max(20).default([]),
        restartTimeoutSeconds: z.number().int().min(1).max(3_600).default(120),
        healthChecks: z
          .array(
            z.union([
              z.object({ tcpPort: z.number().int().min(1).max(65_535), host: z.string().min(1).optional() }).strict(),
              z.object({ command: z.string().min(1, 'must be a shell command') }).strict(),
            ]),
          )
          .max(20)
          .default([]),
        /** Complete versions kept on disk (current and previous always kept). */
        keepVersions: z.number().int().min(2).max(20).default(3),
        injectFailure: z
          .object({
            reason: InstallFailureReason.default('INJECTED'),
            step: InstallStep.default('restarted'),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({ restart: [], restartTimeoutSeconds: 120, healthChecks: [], keepVersions: 3 }),
  })
  .strict()
  .superRefine((config, context) => {
    if (config.provisioning && !config.thingName.startsWith(`${config.provisioning.model}-`)) {
      context.addIssue({
        code: 'custom',
        path: ['thingName'],
        message: `must be ${config.provisioning.model}-<serial>: provisioning.model is ${config.provisioning.model}`,
      });
    }
    if (config.clientId !== undefined && config.clientId !== config.thingName) {
      context.addIssue({
        code: 'custom',
        path: ['clientId'],
        message: `must equal thingName (${config.thingName}): IoT Core only lets a robot connect as its own thing; leave it out`,
      });
    }
    if (config.keepAliveSeconds < IOT_KEEP_ALIVE_MIN_SECONDS && !config.allowShortKeepAlive) {
      context.addIssue({
        code: 'custom',
        path: ['keepAliveSeconds'],
        message:
          `must be ${IOT_KEEP_ALIVE_MIN_SECONDS}–${IOT_KEEP_ALIVE_MAX_SECONDS} (AWS IoT Core's limits); ` +
          'set allowShortKeepAlive: true to go lower against a local broker',
      });
    }
  });

export interface AgentConfig {
  readonly configFile: string;
  readonly endpoint: string;
  readonly port: number;
  readonly thingName: string;
  /** Always the thing name. */
  readonly clientId: string;
  /** Absolute paths, checked readable and PEM of the right kind. */
  readonly certificateFile: string;
  readonly privateKeyFile: string;
  readonly caFile: string | undefined;
  readonly keepAliveSeconds: number;
  /** The first connection is given up (and the agent exits) after this long without one. */
  readonly firstConnectionBudgetSeconds: number;
  readonly stateDir: string;
  readonly basicIngest: boolean;
  /** The Basic Ingest telemetry rule of the stage the robot belongs to. */
  readonly telemetryRule: string;
  readonly telemetry: { readonly sampleIntervalMs: number; readonly policy: TelemetryPolicyConfig };
  readonly reconnect: { readonly minSeconds: number; readonly maxSeconds: number };
  /** Event delivery: batches awaiting the cloud's acknowledgement at most, and how long to wait for it. */
  readonly delivery: { readonly maxInFlightBatches: number; readonly ackTimeoutMs: number };
  readonly logLevel: LogLevel | undefined;
  readonly teleoperation: TeleoperationSettings;
  /** Certificate rotation: how long before expiry, and how long a new certificate may take to connect. */
  readonly certificate: { readonly rotateBeforeDays: number; readonly connectTimeoutSeconds: number };
  /** Claim provisioning settings, paths absolute: the first boot's (agent/provisioning-driver.ts). */
  readonly provisioning: ProvisioningSettings | undefined;
  /** Software updates (agent/installer.ts); root absolute. */
  readonly install: InstallSettings;
}

export interface InstallSettings {
  readonly root: string;
  readonly restart: readonly string[];
  readonly restartTimeoutSeconds: number;
  readonly healthChecks: readonly ({ readonly tcpPort: number; readonly host?: string | undefined } | { readonly command: string })[];
  readonly keepVersions: number;
  readonly injectFailure: { readonly reason: InstallFailureReason; readonly step: InstallStep } | undefined;
}

export interface ProvisioningSettings {
  readonly templateName: string;
  readonly claimCertificateFile: string;
  readonly claimPrivateKeyFile: string;
  readonly serialSource: 'raspberry-pi' | { readonly file: string };
  readonly model: RobotModel;
  readonly batch: string;
}

export interface TeleoperationSettings {
  readonly enabled: boolean;
  readonly tickMs: number;
  readonly idleTickMs: number;
  readonly procRoot: string;
  readonly python: string;
  /** The defaults with the file's overrides applied and checked (ports distinct, windows positive). */
  readonly config: TeleoperationConfig;
}

/**
 * Reads, validates and resolves the config at `path`. Throws `AgentConfigError` saying what to fix: a missing or
 * non-JSON file, each bad field by name, a certificate/key/CA file that cannot be read or is not what it should be,
 * or a private key that is not the certificate's (which TLS would only report as a context it cannot build).
 */
export async function loadAgentConfig(path: string): Promise<AgentConfig> {
  const config = await readAgentConfig(path);
  await checkOwnCredentials(config);
  return config;
}

/**
 * Reads and validates the config at `path` without opening the credentials it names: a robot on its first boot
 * (agent/provisioning-driver.ts) has no certificate of its own yet. Follow with `checkOwnCredentials` (and, before
 * provisioning, `checkClaimCredentials`).
 */
export async function readAgentConfig(path: string): Promise<AgentConfig> {
  const configFile = resolve(path);
  let text: string;
  try {
    text = await readFile(configFile, 'utf8');
  } catch (error) {
    throw new AgentConfigError(
      `agent config ${configFile} cannot be read (${describeFsError(error)}); ` +
        'pass the agent.json written by `npm run cert -- <thingName>` (or your installer) with --config',
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new AgentConfigError(`agent config ${configFile} is not JSON (${(error as Error).message}); fix the file`);
  }
  return parseAgentConfig(raw, configFile);
}

/** The robot's own certificateFile/privateKeyFile (and caFile): readable PEM, and a pair. Throws AgentConfigError. */
export async function checkOwnCredentials(config: AgentConfig): Promise<void> {
  const { configFile } = config;
  const [certificatePem, privateKeyPem] = await Promise.all([
    checkPem(config.certificateFile, 'certificateFile', 'CERTIFICATE', configFile),
    checkPem(config.privateKeyFile, 'privateKeyFile', 'PRIVATE KEY', configFile),
    config.caFile === undefined ? undefined : checkPem(config.caFile, 'caFile', 'CERTIFICATE', configFile),
  ]);
  checkKeyPair(
    configFile,
    { field: 'certificateFile', path: config.certificateFile, pem: certificatePem },
    { field: 'privateKeyFile', path: config.privateKeyFile, pem: privateKeyPem },
  );
}

/**
 * The batch's claim certificate and key (`provisioning.claimCertificateFile` / `claimPrivateKeyFile`, and caFile):
 * readable PEM, and a pair. Throws AgentConfigError naming the field; the config must have `provisioning`.
 */
export async function checkClaimCredentials(config: AgentConfig): Promise<void> {
  const { configFile, provisioning } = config;
  if (!provisioning) throw new AgentConfigError(`agent config ${configFile} has no provisioning section: there is no claim to check`);
  const certificateField = 'provisioning.claimCertificateFile';
  const keyField = 'provisioning.claimPrivateKeyFile';
  const [certificatePem, privateKeyPem] = await Promise.all([
    checkPem(provisioning.claimCertificateFile, certificateField, 'CERTIFICATE', configFile),
    checkPem(provisioning.claimPrivateKeyFile, keyField, 'PRIVATE KEY', configFile),
    config.caFile === undefined ? undefined : checkPem(config.caFile, 'caFile', 'CERTIFICATE', configFile),
  ]);
  checkKeyPair(
    configFile,
    { field: certificateField, path: provisioning.claimCertificateFile, pem: certificatePem },
    { field: keyField, path: provisioning.claimPrivateKeyFile, pem: privateKeyPem },
  );
}

/** Validates an already parsed config; relative paths resolve against `configFile`'s folder. No file access. */
export function parseAgentConfig(raw: unknown, configFile: string): AgentConfig {
  const parsed = AgentConfigFile.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => ({
      field: issue.path.join('.') || '(file)',
      message: issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')}` : issue.message,
    }));
    throw new AgentConfigError(
      `agent config ${configFile} is invalid: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`,
      problems,
    );
  }
  const file = parsed.data;
  let policy: TelemetryPolicyConfig;
  try {
    const { sampleIntervalMs: _sampleIntervalMs, ...overrides } = file.telemetry;
    policy = telemetryPolicyConfig(overrides);
  } catch (error) {
    const issue = error instanceof z.ZodError ? error.issues[0] : undefined;
    const field = `telemetry.${issue?.path.join('.') ?? ''}`;
    const message = issue?.message ?? (error as Error).message;
    throw new AgentConfigError(`agent config ${configFile} is invalid: ${field}: ${message}`, [{ field, message }]);
  }
  const { enabled, tickMs, idleTickMs, procRoot, python, ...teleoperationOverrides } = file.teleoperation;
  let teleoperation: TeleoperationSettings;
  try {
    teleoperation = {
      enabled,
      tickMs,
      idleTickMs,
      procRoot: resolve(dirname(configFile), procRoot),
      python,
      config: teleoperationConfig(teleoperationOverrides),
    };
  } catch (error) {
    const issue = error instanceof z.ZodError ? error.issues[0] : undefined;
    const field = `teleoperation.${issue?.path.join('.') ?? ''}`;
    const message = issue?.message ?? (error as Error).message;
    throw new AgentConfigError(`agent config ${configFile} is invalid: ${field}: ${message}`, [{ field, message }]);
  }
  const base = dirname(configFile);
  return {
    configFile,
    endpoint: file.endpoint,
    port: file.port,
    thingName: file.thingName,
    clientId: file.thingName,
    certificateFile: resolve(base, file.certificateFile),
    privateKeyFile: resolve(base, file.privateKeyFile),
    caFile: file.caFile === undefined ? undefined : resolve(base, file.caFile),
    keepAliveSeconds: file.keepAliveSeconds,
    firstConnectionBudgetSeconds: file.firstConnectionBudgetSeconds,
    stateDir: resolve(base, file.stateDir),
    basicIngest: file.basicIngest,
    telemetryRule: file.telemetryRule,
    telemetry: { sampleIntervalMs: file.telemetry.sampleIntervalMs, policy },
    reconnect: file.reconnect,
    delivery: file.delivery,
    certificate: file.certificate,
    logLevel: isLogLevel(file.logLevel) ? file.logLevel : undefined,
    teleoperation,
    install: {
      ...file.install,
      root: resolve(base, file.install.root ?? join(file.stateDir, 'software')),
      injectFailure: file.install.injectFailure,
    },
    provisioning: file.provisioning && {
      ...file.provisioning,
      claimCertificateFile: resolve(base, file.provisioning.claimCertificateFile),
      claimPrivateKeyFile: resolve(base, file.provisioning.claimPrivateKeyFile),
      serialSource:
        file.provisioning.serialSource === 'raspberry-pi' ? 'raspberry-pi' : { file: resolve(base, file.provisioning.serialSource.file) },
    },
  };
}

async function checkPem(path: string, field: string, kind: 'CERTIFICATE' | 'PRIVATE KEY', configFile: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new AgentConfigError(
      `agent config ${configFile}: ${field} ${path} cannot be read (${describeFsError(error)}); ` +
        'fix the path (relative paths are relative to the config file) or the file permissions',
      [{ field, message: 'cannot be read' }],
    );
  }
  // `-----BEGIN CERTIFICATE-----`, or `-----BEGIN EC PRIVATE KEY-----` / `RSA PRIVATE KEY` / `PRIVATE KEY`.
  const pattern = new RegExp(`-----BEGIN (?:[A-Z0-9]+ )?${kind}-----`);
  if (!pattern.test(text)) {
    throw new AgentConfigError(
      `agent config ${configFile}: ${field} ${path} is not a PEM ${kind.toLowerCase()} ` +
        `(no "-----BEGIN … ${kind}-----" line); point it at the right file`,
      [{ field, message: `not a PEM ${kind.toLowerCase()}` }],
    );
  }
  return text;
}

interface CredentialFile {
  readonly field: string;
  readonly path: string;
  readonly pem: string;
}

/** The certificate and key must be a pair: the TLS layer would only say it cannot build its context. */
function checkKeyPair(configFile: string, certificateFile: CredentialFile, privateKeyFile: CredentialFile): void {
  const cert = certificateFile.field;
  const key = privateKeyFile.field;
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certificateFile.pem);
  } catch (error) {
    throw new AgentConfigError(
      `agent config ${configFile}: ${cert} ${certificateFile.path} is not a valid certificate (${(error as Error).message}); ` +
        'point it at the certificate issued for this robot',
      [{ field: cert, message: 'not a valid certificate' }],
    );
  }
  let matches: boolean;
  try {
    matches = certificate.checkPrivateKey(createPrivateKey(privateKeyFile.pem));
  } catch (error) {
    throw new AgentConfigError(
      `agent config ${configFile}: ${key} ${privateKeyFile.path} is not a usable private key (${(error as Error).message}); ` +
        `it must be the unencrypted PEM key issued with ${cert}`,
      [{ field: key, message: 'not a usable private key' }],
    );
  }
  if (!matches) {
    throw new AgentConfigError(
      `agent config ${configFile}: ${key} ${privateKeyFile.path} is not the key of ${cert} ${certificateFile.path}; ` +
        'use the key issued together with that certificate (the pair `npm run cert` or your installer wrote)',
      [{ field: key, message: `does not match ${cert}` }],
    );
  }
}

function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a folder';
  return (error as Error).message;
}
