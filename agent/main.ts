import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readHardwareSerial } from './adapters/hardware-serial.js';
import { ProvisioningStore } from './adapters/provisioning-store.js';
import { createSystemTelemetry } from './adapters/system-telemetry.js';
import { createJsonLog, logLevelFromEnv, type Logger } from './adapters/json-log.js';
import { createAgent, type Agent } from './agent.js';
import { AgentConfigError, checkClaimCredentials, checkOwnCredentials, readAgentConfig, type AgentConfig } from './config.js';
import { EXIT_CONFIG } from './core/connection-failure.js';
import { isProvisioningStep, needsFirstBoot, type ProvisioningStep } from './core/provisioning.js';
import { ensureInstalled, failureReports, FirstBoot, type FailureReports } from './provisioning-driver.js';
import { createTeleoperationScorer } from './core/teleoperation-scorer.js';
import { createTeleoperationProbe } from './adapters/teleoperation-probe.js';
import { describeError } from '../lib/describe-error.js';
import { startTeleoperationMonitor, type TeleoperationMonitor } from './teleoperation-monitor.js';
import { startAgentInstaller } from './installer/wiring.js';
import { TeleoperationSignal } from './installer/teleoperation-gate.js';

/**
 * `npm run agent -- --config <agent.json>` (tsx agent/main.ts): the edge agent as a process. Loads and checks the
 * config, builds the real adapters (/proc telemetry, the on-disk queue, the MQTT link) and runs until SIGTERM or
 * SIGINT, which stop it cleanly (teleoperation monitor first, so its last event still reaches the queue; then a clean
 * MQTT DISCONNECT, queue closed) and exit 0 (a repeated signal does not
 * interrupt the stop, which is bounded). A bad command line exits 2 with
 * the usage; a bad config or any uncaught error is logged as one JSON line and exits 1. When the first connection
 * cannot be made within `firstConnectionBudgetSeconds` (each failed attempt logged with what to check), the agent
 * logs why, stops cleanly and exits 78 (EX_CONFIG: credentials, CA, a certificate the broker refuses, the clock) or
 * 69 (EX_UNAVAILABLE: the endpoint cannot be reached): never a process that looks healthy but never connects. Once
 * connected, outages never end it. systemd (Restart=on-failure) restarts it after any non-zero exit.
 *
 * First boot: with agent.json `provisioning` and no certificate of its own (or a provisioning under way in
 * `<stateDir>/provisioning`), the agent first provisions itself by claim (agent/provisioning-driver.ts), then starts
 * as usual with the certificate it installed; a provisioning that gives up exits with its reason's status (78 or 69).
 *
 * Certificate rotation (agent/certificate-rotation.ts): the agent connects with the certificate it last rotated to
 * (`<stateDir>/certificate-rotation/state.json`), else agent.json's; once connected it resumes a rotation under way,
 * rotates when the certificate nears expiry, and on the cloud's `rotate-certificate` command.
 */

const USAGE = `Usage: npm run agent -- --config <agent.json>

  --config, -c <file>  the agent config (written by \`npm run cert -- <thingName>\` for the local cloud)
  --help, -h           show this help

Environment: LOG_LEVEL=debug|info|warn|error (the config's logLevel wins).`;

/**
 * Exit codes: 0 clean stop, 1 failure (a bad config among them), 2 bad command line; 78 and 69 when the first
 * connection, or the first boot's provisioning, was given up (agent/core/connection-failure.ts).
 */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

const STOP_DEADLINE_MS = 15_000;
/**
 * Test hook (test/integration/agent-first-boot*.test.ts): the agent SIGKILLs itself right after this provisioning step
 * is persisted, as a power cut would stop it. Not for robots.
 */
const KILL_AFTER_STEP_ENV = 'HEARTBEAT_PROVISIONING_KILL_AFTER';

class UsageError extends Error {
  override readonly name = 'UsageError';
}

function parseCommandLine(argv: readonly string[]): { help: true } | { help: false; configFile: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return { help: true };
  if (values.config === undefined || values.config.trim() === '') throw new UsageError('--config <file> is required');
  return { help: false, configFile: values.config };
}

async function agentVersion(): Promise<string | undefined> {
  if (process.env.npm_package_version) return process.env.npm_package_version;
  try {
    const text = await readFile(new URL('../package.json', import.meta.url), 'utf8');
    const version = (JSON.parse(text) as { version?: unknown }).version;
    return typeof version === 'string' && version.length > 0 && version.length <= 64 ? version : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  let bootLog: Logger = createJsonLog();
  let agent: Agent | undefined;
  let teleoperation: TeleoperationMonitor | undefined;
  let rotation: { stop(): void } | undefined;
  let installer: { stop(): void } | undefined;
  let exiting = false;

  const fail = (message: string, error: unknown) => {
    bootLog.error(message, { error });
    process.exit(EXIT_FAILURE);
  };
  process.on('uncaughtException', (error) => fail('uncaught error', error));
  process.on('unhandledRejection', (error) => fail('unhandled rejection', error));

  let command;
  try {
    command = parseCommandLine(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    process.exit(EXIT_USAGE);
  }
  if (command.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }

  /** Stops cleanly, then exits with `code`. */
  const stop = async (reason: NodeJS.Signals | 'first connection given up', code: number) => {
    // npm, tsx and systemd (KillMode=control-group) may each deliver the same signal: one stop is enough.
    if (exiting) {
      bootLog.debug('asked to stop while stopping: already stopping', { reason });
      return;
    }
    exiting = true;
    bootLog.info('stopping', { reason, exitCode: code });
    // The stop is bounded inside (a publish in flight gets 5 s); this only guards against a wedged native layer.
    setTimeout(() => fail('clean stop took too long', new Error(`no clean stop within ${STOP_DEADLINE_MS} ms`)), STOP_DEADLINE_MS).unref();
    try {
      rotation?.stop();
      installer?.stop();
      await teleoperation?.stop();
      await agent?.stop();
      process.exit(code);
    } catch (error) {
      fail('clean stop failed', error);
    }
  };
  process.on('SIGTERM', (signal) => void stop(signal, 0));
  process.on('SIGINT', (signal) => void stop(signal, 0));

  let config: AgentConfig;
  try {
    config = await readAgentConfig(command.configFile);
  } catch (error) {
    if (error instanceof AgentConfigError) {
      bootLog.error(error.message, { error: { name: error.name, problems: error.problems } });
      process.exit(EXIT_FAILURE);
    }
    throw error;
  }

  let firstBoot: FirstBoot | undefined;
  let failureReports: FailureReports | undefined;
  if (config.provisioning) {
    const provisioned = await provisionFirst(config, bootLog);
    if (provisioned.exitCode !== undefined) process.exit(provisioned.exitCode);
    firstBoot = provisioned.firstBoot;
    failureReports = provisioned.reports;
    if (provisioned.thingName !== undefined && provisioned.thingName !== config.thingName) {
      bootLog.warn('the cloud registered this robot under another thing name than agent.json says; using the registered one', {
        configured: config.thingName,
        registered: provisioned.thingName,
      });
      config = { ...config, thingName: provisioned.thingName, clientId: provisioned.thingName };
    }
  }
  try {
    await checkOwnCredentials(config);
  } catch (error) {
    if (error instanceof AgentConfigError) {
      bootLog.error(error.message, { error: { name: error.name, problems: error.problems } });
      process.exit(EXIT_FAILURE);
    }
    throw error;
  }

  const log = createJsonLog({ level: config.logLevel ?? logLevelFromEnv(), fields: { thingName: config.thingName } });
  bootLog = log;
  // Loaded only now: the SDK's native module costs ~15 MB, not worth paying for `--help` or a bad config.
  const { MqttLink, LinkGaveUpError } = await import('./adapters/mqtt-link.js');
  const { RotatingLink } = await import('./adapters/rotating-link.js');
  const { CertificateRotation, startingCredentials } = await import('./certificate-rotation.js');
  // Certificate rotation (agent/certificate-rotation.ts): the link connects with the last certificate rotated to (else
  // agent.json's) and can move to a new one without a gap; rotation starts only once the link is connected.
  const baseCredentials = { certificateFile: config.certificateFile, privateKeyFile: config.privateKeyFile };
  const mqttLog = log.child({ component: 'mqtt' });
  const link = new RotatingLink(
    (files, options) =>
      new MqttLink(
        { ...config, ...files, firstConnectionBudgetSeconds: options.firstConnectionBudgetSeconds ?? config.firstConnectionBudgetSeconds },
        { log: mqttLog },
      ),
    await startingCredentials(config.stateDir, baseCredentials),
    mqttLog,
  );
  const certificateRotation = new CertificateRotation({
    thingName: config.thingName,
    stateDir: config.stateDir,
    baseCredentials,
    link,
    report: (event) => (agent ? agent.report(event) : Promise.reject(new Error('the agent is not running'))),
    settings: { rotateBeforeDays: config.certificate.rotateBeforeDays, connectTimeoutMs: config.certificate.connectTimeoutSeconds * 1000 },
    log: log.child({ component: 'certificate-rotation' }),
  });
  rotation = certificateRotation;
  const version = await agentVersion();
  const telemetry = createSystemTelemetry({
    ...(version === undefined ? {} : { agentVersion: version }),
    log: (message, details) => log.warn(message, { component: 'telemetry', ...details }),
  });
  agent = createAgent({ config, link, telemetry, log, commands: certificateRotation.commands });
  if (exiting) return;
  await agent.start();
  // The same promise the agent started: it settles once, when the first connection is made or given up.
  link.start().then(
    async () => {
      // The first connection with the robot's own certificate is what makes a first boot `provisioned`.
      await firstBoot?.confirmConnected();
      // Rotation needs the connection: it may publish a request at once (expiry due, or a rotation to resume).
      if (!exiting) await certificateRotation.start().catch((error: unknown) => log.error('certificate rotation did not start; the robot keeps its certificate', { error }));
      // Then what went wrong on the way (this run's, or a run that stopped before it could tell) goes to the cloud.
      if (!failureReports || !agent) return;
      try {
        const events = await failureReports.events();
        for (const event of events) await agent.report(event);
        await failureReports.clear();
        if (events.length > 0) log.info('provisioning failures reported', { count: events.length });
      } catch (error) {
        // Stopping meanwhile: they stay on disk and are reported by the next run.
        if (!exiting) log.warn('provisioning failures not reported yet; the next start reports them', { error });
      }
    },
    async (error: unknown) => {
      if (!(error instanceof LinkGaveUpError)) return;
      const provisioning = firstBoot ? await firstBoot.ownConnectionFailed(error.problem, describeError(error.cause)) : undefined;
      const exitCode = provisioning?.exitCode ?? error.exitCode;
      log.error('cannot connect to the broker; exiting so that systemd restarts the agent', {
        endpoint: config.endpoint,
        port: config.port,
        problem: error.problem,
        check: error.check,
        attempts: error.attempts,
        firstConnectionBudgetSeconds: config.firstConnectionBudgetSeconds,
        ...(provisioning ? { reason: provisioning.failure.reason } : {}),
        exitCode,
      });
      void stop('first connection given up', exitCode);
    },
  ).catch((error: unknown) => fail('first boot: recording the provisioned robot failed', error));
  if (exiting) return;
  // Whether the robot is being driven, for the installer (an install never starts during a session).
  const driving = new TeleoperationSignal();
  teleoperation = await startTeleoperation(config, agent, log, driving);
  // A dropped link leaves the cloud's session unconfirmed: on every connection the monitor states where it stands.
  const monitor = teleoperation;
  if (monitor) agent.onLinkUp(() => monitor.announce());
  if (exiting) await teleoperation?.stop();
  // Software updates (agent/installer.ts): settles an install a stop interrupted, then takes IoT Jobs' install jobs.
  if (!exiting) {
    installer = await startAgentInstaller({ config, agent, link, log: log.child({ component: 'installer' }), teleoperation: driving }).catch((error: unknown) => {
      log.error('the installer did not start; the robot takes no updates until the agent restarts', { error });
      return undefined;
    });
  }
  log.info('agent running', {
    endpoint: config.endpoint,
    port: config.port,
    pid: process.pid,
    ...(firstBoot ? { provisioning: 'registered; not online until the first connection with its own certificate' } : {}),
  });
}

/**
 * The first boot, when agent.json has `provisioning` and the robot needs it (agent/core/provisioning.ts
 * `needsFirstBoot`): `firstBoot` to confirm once the agent connects, the registered thing name, or the exit status
 * when provisioning gave up (logged with its reason) or cannot start.
 */
async function provisionFirst(
  config: AgentConfig,
  log: Logger,
): Promise<{ firstBoot?: FirstBoot; reports?: FailureReports; thingName?: string; exitCode?: number }> {
  const provisioning = config.provisioning!;
  const provisioningLog = log.child({ component: 'provisioning' });
  const store = new ProvisioningStore(join(config.stateDir, 'provisioning'));
  let record;
  try {
    record = await store.load();
  } catch (error) {
    provisioningLog.error('provisioning: the stored state cannot be used', { error });
    return { exitCode: EXIT_CONFIG };
  }
  if (record.step === 'provisioned') {
    if (await ensureInstalled(store, config, record)) provisioningLog.warn('provisioning: the certificate was missing; installed it again', { certificateFile: config.certificateFile });
    const serial = record.thingName.slice(`${provisioning.model}-`.length);
    return { thingName: record.thingName, reports: failureReports(store, serial) };
  }
  if (!needsFirstBoot(record, await isFile(config.certificateFile))) return {};
  let serial: string;
  try {
    serial = await readHardwareSerial(provisioning.serialSource);
    await checkClaimCredentials(config);
  } catch (error) {
    const problems = error instanceof AgentConfigError ? { problems: error.problems } : {};
    provisioningLog.error(`provisioning cannot start: ${(error as Error).message}`, { reason: 'CLAIM_REJECTED', ...problems, exitCode: EXIT_CONFIG });
    return { exitCode: EXIT_CONFIG };
  }
  const { MqttLink } = await import('./adapters/mqtt-link.js');
  const killAfter = process.env[KILL_AFTER_STEP_ENV];
  const firstBoot = new FirstBoot({
    config: { ...config, provisioning },
    serial,
    store,
    createLink: (options, linkLog) => new MqttLink(options, { log: linkLog }),
    log: provisioningLog,
    ...(killAfter !== undefined && isProvisioningStep(killAfter)
      ? { afterPersist: (step: ProvisioningStep) => void (step === killAfter && process.kill(process.pid, 'SIGKILL')) }
      : {}),
  });
  const result = await firstBoot.run();
  if (result.kind === 'gave-up') return { exitCode: result.exitCode };
  const reports = failureReports(store, serial);
  return result.kind === 'ready' ? { firstBoot, reports, thingName: result.thingName } : { reports, thingName: result.thingName };
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (stats) => stats.isFile(),
    () => false,
  );
}

/** The teleoperation monitor feeding the agent's event queue, unless the config turns it off. Never fails the agent. */
async function startTeleoperation(
  config: AgentConfig,
  agent: Agent,
  log: Logger,
  driving: TeleoperationSignal,
): Promise<TeleoperationMonitor | undefined> {
  const settings = config.teleoperation;
  const teleopLog = log.child({ component: 'teleoperation' });
  if (!settings.enabled) {
    teleopLog.info('teleoperation detection disabled by config');
    return undefined;
  }
  try {
    const probe = await createTeleoperationProbe({
      config: settings.config,
      log: teleopLog,
      procRoot: settings.procRoot,
      python: settings.python,
    });
    teleopLog.info('teleoperation probe ready', { mode: probe.mode, counterPid: probe.counterPid });
    return startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(settings.config),
      report: (event) => agent.report(event),
      log: teleopLog,
      tickMs: settings.tickMs,
      idleTickMs: settings.idleTickMs,
      onTransition: (transition) => driving.set(transition.type === 'started'),
    });
  } catch (error) {
    teleopLog.error('teleoperation detection could not start; the agent runs without it', { error });
    return undefined;
  }
}

main().catch((error: unknown) => {
  createJsonLog().error('agent failed', { error });
  process.exit(EXIT_FAILURE);
});
