import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createSystemTelemetry } from './adapters/system-telemetry.js';
import { createJsonLog, logLevelFromEnv, type Logger } from './adapters/json-log.js';
import { createAgent, type Agent } from './agent.js';
import { AgentConfigError, loadAgentConfig, type AgentConfig } from './config.js';
import { createTeleoperationScorer } from './core/teleoperation-scorer.js';
import { createTeleoperationProbe } from './adapters/teleoperation-probe.js';
import { startTeleoperationMonitor, type TeleoperationMonitor } from './teleoperation-monitor.js';

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
 */

const USAGE = `Usage: npm run agent -- --config <agent.json>

  --config, -c <file>  the agent config (written by \`npm run cert -- <thingName>\` for the local cloud)
  --help, -h           show this help

Environment: LOG_LEVEL=debug|info|warn|error (the config's logLevel wins).`;

/**
 * Exit codes: 0 clean stop, 1 failure (a bad config among them), 2 bad command line; 78 and 69 when the first
 * connection was given up (agent/core/connection-failure.ts).
 */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const STOP_DEADLINE_MS = 15_000;

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
      await teleoperation?.stop();
      await agent?.stop();
      process.exit(code);
    } catch (error) {
      fail('clean stop failed', error);
    }
  };
  process.on('SIGTERM', (signal) => void stop(signal, 0));
  process.on('SIGINT', (signal) => void stop(signal, 0));

  let config;
  try {
    config = await loadAgentConfig(command.configFile);
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
  const link = new MqttLink(config, { log: log.child({ component: 'mqtt' }) });
  const version = await agentVersion();
  const telemetry = createSystemTelemetry({
    ...(version === undefined ? {} : { agentVersion: version }),
    log: (message, details) => log.warn(message, { component: 'telemetry', ...details }),
  });
  agent = createAgent({ config, link, telemetry, log });
  if (exiting) return;
  await agent.start();
  // The same promise the agent started: it settles once, when the first connection is made or given up.
  link.start().catch((error: unknown) => {
    if (!(error instanceof LinkGaveUpError)) return;
    log.error('cannot connect to the broker; exiting so that systemd restarts the agent', {
      endpoint: config.endpoint,
      port: config.port,
      problem: error.problem,
      check: error.check,
      attempts: error.attempts,
      firstConnectionBudgetSeconds: config.firstConnectionBudgetSeconds,
      exitCode: error.exitCode,
    });
    void stop('first connection given up', error.exitCode);
  });
  if (exiting) return;
  teleoperation = await startTeleoperation(config, agent, log);
  // A dropped link leaves the cloud's session unconfirmed: on every connection the monitor states where it stands.
  const monitor = teleoperation;
  if (monitor) agent.onLinkUp(() => monitor.announce());
  if (exiting) await teleoperation?.stop();
  log.info('agent running', { endpoint: config.endpoint, port: config.port, pid: process.pid });
}

/** The teleoperation monitor feeding the agent's event queue, unless the config turns it off. Never fails the agent. */
async function startTeleoperation(config: AgentConfig, agent: Agent, log: Logger): Promise<TeleoperationMonitor | undefined> {
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
