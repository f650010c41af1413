import './process-env.js';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startLocalCloud, type LocalCloud, type ProgressEvent } from './cloud.js';
import { ensureDashboardBuilt } from './dashboard-build.js';
import { startSimulatedFleet, type SimulatedFleet } from './simulated-fleet.js';
import { RELAY_WINDOW_MS, StopSignals } from './stop-signals.js';

/**
 * `npm start [-- --robots N]`: the local cloud with a simulated fleet, until Ctrl-C (or SIGTERM, SIGHUP): then an
 * orderly stop (robots' disconnects written to the event log, endpoints.json removed, "Stopped.", exit 0); see
 * local/stop-signals.ts for how repeated signals count. Ports and the state dir come from the environment (USAGE).
 */
const USAGE = `Usage: npm start [-- --robots N] [--host 127.0.0.1]

Starts the Lekiwi Heartbeat backend on this machine (no AWS account needed) with N simulated robots (default 3).
Ctrl-C stops it in order; a Ctrl-C more than ${RELAY_WINDOW_MS / 1000} s after the first exits at once.

Environment:
  HTTP_PORT        the dashboard, its sign-in and /api/v2 (default 3000)
  WS_PORT          live WebSocket API (default 3001)
  MQTT_PORT        MQTT over mTLS for robots (default 8883)
  DYNAMODB_PORT    DynamoDB Local, the event log (default: a free port)
  PGLITE_PORT      the embedded PostgreSQL's socket, unused with DATABASE_URL (default: a free port)
  IOT_DATA_PORT    IoT Core's data plane (Publish) stand-in (default: a free port)
  KINESIS_PORT     the ingest stream's Kinesis stand-in (default: a free port)
                   The stand-ins listen on 127.0.0.1 only; --host moves the first three only.
  LOCAL_STATE_DIR  where everything is kept (default .local)
  DASHBOARD_DIST   serve this built dashboard instead of building dashboard/ (default: dashboard/dist, built when
                   older than its sources)
  DATABASE_URL     use this PostgreSQL server instead of the embedded PGlite
  MIN_KEEP_ALIVE_SECONDS  lowest MQTT keep-alive accepted (default 30, as IoT Core)
  LOG_LEVEL        the handlers' log level (default WARN)`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function port(variable: string, fallback: number): number {
  const raw = process.env[variable];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) fail(`${variable}=${raw} is not a port number (0–65535).`);
  return value;
}

let args;
try {
  args = parseArgs({
    options: { robots: { type: 'string', default: '3' }, host: { type: 'string', default: '127.0.0.1' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  }).values;
} catch (error) {
  fail((error as Error).message);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const robots = Number(args.robots);
if (!Number.isInteger(robots) || robots < 0 || robots > 1000) fail(`--robots ${args.robots}: give a whole number from 0 to 1000.`);
const minKeepAlive = process.env.MIN_KEEP_ALIVE_SECONDS ? Number(process.env.MIN_KEEP_ALIVE_SECONDS) : undefined;
if (minKeepAlive !== undefined && (!Number.isInteger(minKeepAlive) || minKeepAlive < 1)) {
  fail(`MIN_KEEP_ALIVE_SECONDS=${process.env.MIN_KEEP_ALIVE_SECONDS} must be a whole number of seconds ≥ 1.`);
}

// Every port checked before anything starts.
const ports = {
  httpPort: port('HTTP_PORT', 3000),
  wsPort: port('WS_PORT', 3001),
  mqttPort: port('MQTT_PORT', 8883),
  dynamodbPort: port('DYNAMODB_PORT', 0),
  pglitePort: port('PGLITE_PORT', 0),
  iotDataPort: port('IOT_DATA_PORT', 0),
  kinesisPort: port('KINESIS_PORT', 0),
};

const stateDir = resolve(process.env.LOCAL_STATE_DIR || '.local');
const say = (line: string) => process.stdout.write(`${line}\n`);
const showProgress = (event: ProgressEvent) => {
  if (event.phase === 'start') say(`… ${event.step}`);
  else say(`✓ ${event.step} (${event.ms} ms${event.detail ? `, ${event.detail}` : ''})`);
};

let cloud: LocalCloud | undefined;
let fleet: SimulatedFleet | undefined;
let stopping: Promise<void> | undefined;

async function stop(signal: string): Promise<void> {
  stopping ??= (async () => {
    say(`\n${signal}: stopping the local cloud…`);
    await fleet?.stop();
    await cloud?.stop();
    say('Stopped.');
  })();
  return stopping;
}

const stopSignals = new StopSignals();
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    const decision = stopSignals.receive();
    // The same Ctrl-C relayed by npm and tsx: the orderly stop goes on.
    if (decision === 'ignore') return;
    if (decision === 'exit-now') {
      process.stderr.write(`${signal} again: exiting without finishing the stop.\n`);
      process.exit(130);
    }
    void stop(signal).then(() => process.exit(0), () => process.exit(1));
  });
}

try {
  say(`Starting the Lekiwi Heartbeat local cloud in ${stateDir}`);
  const dashboardDir = process.env.DASHBOARD_DIST ? resolve(process.env.DASHBOARD_DIST) : undefined;
  if (!dashboardDir) {
    const started = Date.now();
    const built = await ensureDashboardBuilt({ root: fileURLToPath(new URL('..', import.meta.url)) }, (reason) =>
      say(`… Building the dashboard… (${reason})`),
    );
    say(built ? `✓ dashboard built (${Date.now() - started} ms)` : '✓ dashboard is up to date');
  }
  cloud = await startLocalCloud({
    stateDir,
    ...(dashboardDir ? { dashboardDir } : {}),
    host: args.host,
    ...ports,
    ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
    ...(minKeepAlive !== undefined ? { minKeepAliveSeconds: minKeepAlive } : {}),
    onProgress: showProgress,
    onFatal: (message) => {
      process.stderr.write(`\nThe local cloud stopped: ${message}\n`);
      void stop('fatal').finally(() => process.exit(1));
    },
  });
  if (robots > 0) {
    say(`… simulated fleet (${robots} robots)`);
    fleet = await startSimulatedFleet({ cloud, count: robots, say });
    say(`✓ simulated fleet: ${fleet.thingNames.join(', ')}`);
  }
  const { endpoints } = cloud;
  say(
    `Ready: dashboard ${endpoints.pageUrl} (sign in as admin, engineer or operator) · API ${endpoints.apiUrl} · WebSocket ${endpoints.webSocketUrl} · MQTT ${endpoints.mqttUrl} · ` +
      `tokens ${resolve(stateDir, 'tokens')} · endpoints ${resolve(stateDir, 'endpoints.json')} (Ctrl-C stops)`,
  );
} catch (error) {
  process.stderr.write(`\nThe local cloud could not start: ${(error as Error).message}\n`);
  await stop('error').catch(() => {});
  process.exit(1);
}
