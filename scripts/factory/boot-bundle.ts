import { createHash } from 'node:crypto';
import { BatchId, provisioningTemplateName, PROVISIONING_TEMPLATE_NAME_PATTERN, RobotModel } from '../../schemas/index.js';

/**
 * The factory's boot bundle for Raspberry Pi OS (issue 11, `npm run factory -- bundle`): pure builders that return
 * each file's bytes; scripts/factory.ts reads the inputs and writes them.
 *
 * INVARIANTS
 * - Per batch, not per robot: nothing in it names a serial or holds a robot's key. The only private key is the
 *   batch's claim key; the only certificates are the claim certificate and the root CA the broker's certificate
 *   chains to. The robot's own key is made on the robot, in STATE_DIR, by provisioning.
 * - Deterministic: the same inputs give the same bytes, file for file; the one timestamp is `generatedAt` in
 *   manifest.json. No randomness, JSON keys sorted.
 * - `user-data` alone is enough: it carries every other file (cloud-init writes them to BUNDLE_DIR on the robot and
 *   runs install.sh from there), so the factory copies `user-data` and `meta-data` to the SD card's boot partition.
 */

/** Where things go on the robot. */
export const ROBOT_PATHS = {
  /** cloud-init writes the bundle here (root only), install.sh installs from here. */
  bundleDir: '/etc/heartbeat/bundle',
  configDir: '/etc/heartbeat',
  configFile: '/etc/heartbeat/agent.json',
  claimDir: '/etc/heartbeat/claim',
  /** The agent's state: its outbox, and (once provisioning exists) its own key and certificate. */
  stateDir: '/var/lib/heartbeat',
  unitFile: '/etc/systemd/system/heartbeat-agent.service',
} as const;

export const AGENT_USER = 'heartbeat';
export const UNIT_NAME = 'heartbeat-agent.service';
export const CLAIM_CERTIFICATE_FILE = 'claim.pem.crt';
export const CLAIM_PRIVATE_KEY_FILE = 'claim.private.key';
/** AWS IoT Core's server certificates chain to Amazon Root CA 1. */
export const AMAZON_ROOT_CA_FILE = 'AmazonRootCA1.pem';
export const LOCAL_CA_FILE = 'local-ca.pem';

export interface BootBundleInput {
  readonly batchId: string;
  readonly model: RobotModel;
  /** `aws`: IoT Core and Amazon Root CA 1; `local`: the local cloud's broker and CA. */
  readonly target: 'aws' | 'local';
  /** The IoT data endpoint (`xxxx-ats.iot.<region>.amazonaws.com`) or the local broker's host. */
  readonly iotEndpoint: string;
  readonly iotPort: number;
  readonly templateName: string;
  /** The stage's Basic Ingest telemetry rule (schemas/topics.ts `topicRuleName`). */
  readonly telemetryRule: string;
  readonly claimCertificatePem: string;
  readonly claimPrivateKeyPem: string;
  readonly rootCaPem: string;
  /** Node ≥ 20 on the image, and the agent as bench/agent.ts lays out its esbuild bundle. */
  readonly nodePath: string;
  readonly agentEntry: string;
  /** The only timestamp: manifest.json's `generatedAt`. */
  readonly generatedAt: Date;
}

export interface BundleFile {
  readonly name: string;
  readonly content: string;
  readonly mode: number;
}

export class BootBundleError extends Error {
  override readonly name = 'BootBundleError';
}

/** Every file of the bundle, in a fixed order (manifest.json last). */
export function buildBootBundle(input: BootBundleInput): BundleFile[] {
  checkInput(input);
  const caFile = caFileName(input.target);
  const payload: BundleFile[] = [
    { name: 'agent.json', content: agentConfigTemplate(input), mode: 0o644 },
    { name: CLAIM_CERTIFICATE_FILE, content: input.claimCertificatePem, mode: 0o644 },
    { name: CLAIM_PRIVATE_KEY_FILE, content: input.claimPrivateKeyPem, mode: 0o600 },
    { name: caFile, content: input.rootCaPem, mode: 0o644 },
    { name: UNIT_NAME, content: systemdUnit(input), mode: 0o644 },
    { name: 'install.sh', content: installScript(input), mode: 0o755 },
  ];
  const files = [
    ...payload,
    { name: 'user-data', content: userData(input, payload), mode: 0o600 },
    { name: 'meta-data', content: metaData(input), mode: 0o644 },
  ];
  return [...files, { name: 'manifest.json', content: manifest(input, files), mode: 0o644 }];
}

export function caFileName(target: 'aws' | 'local'): string {
  return target === 'aws' ? AMAZON_ROOT_CA_FILE : LOCAL_CA_FILE;
}

function checkInput(input: BootBundleInput): void {
  const problems: string[] = [];
  if (!BatchId.safeParse(input.batchId).success) problems.push(`batch ${JSON.stringify(input.batchId)} is not a batch id`);
  if (!RobotModel.safeParse(input.model).success) problems.push(`model ${JSON.stringify(input.model)} is not one of ${RobotModel.options.join(', ')}`);
  if (!/^[A-Za-z0-9.-]+$/.test(input.iotEndpoint)) problems.push(`IoT endpoint ${JSON.stringify(input.iotEndpoint)} is not a host name`);
  if (!Number.isInteger(input.iotPort) || input.iotPort < 1 || input.iotPort > 65_535) problems.push(`IoT port ${input.iotPort} is not a port`);
  if (!PROVISIONING_TEMPLATE_NAME_PATTERN.test(input.templateName)) problems.push(`template ${JSON.stringify(input.templateName)} is not a template name`);
  if (!/^[a-zA-Z0-9_]{1,128}$/.test(input.telemetryRule)) problems.push(`telemetry rule ${JSON.stringify(input.telemetryRule)} is not a rule name`);
  for (const [what, path] of [['node', input.nodePath], ['agent entry', input.agentEntry]] as const) {
    // Both end up in a unit's ExecStart and a shell script: absolute, and nothing either would interpret.
    if (!/^\/[A-Za-z0-9._/+-]+$/.test(path)) problems.push(`${what} path ${JSON.stringify(path)} must be absolute, without spaces or quotes`);
  }
  if (pemBlocks(input.claimCertificatePem).join() !== 'CERTIFICATE') problems.push('the claim certificate must be one PEM certificate');
  if (!/^(EC |RSA )?PRIVATE KEY$/.test(pemBlocks(input.claimPrivateKeyPem).join())) problems.push('the claim key must be one PEM private key');
  if (pemBlocks(input.rootCaPem).join() !== 'CERTIFICATE') problems.push('the root CA must be one PEM certificate');
  if (problems.length > 0) throw new BootBundleError(`Cannot build the boot bundle: ${problems.join('; ')}.`);
}

/** The labels of the PEM blocks in `text` (`CERTIFICATE`, `EC PRIVATE KEY`, …), in order. */
export function pemBlocks(text: string): string[] {
  return [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((match) => match[1]!);
}

/**
 * agent.json without `thingName`: install.sh adds `<model>-<serial>` from the robot's hardware serial, the same
 * source the agent's `provisioning.serialSource` names. certificateFile/privateKeyFile are the robot's own, which
 * provisioning creates in the state dir.
 */
export function agentConfigTemplate(input: BootBundleInput): string {
  const config = {
    endpoint: input.iotEndpoint,
    port: input.iotPort,
    certificateFile: `${ROBOT_PATHS.stateDir}/certificate.pem.crt`,
    privateKeyFile: `${ROBOT_PATHS.stateDir}/private.pem.key`,
    caFile: `${ROBOT_PATHS.configDir}/${caFileName(input.target)}`,
    stateDir: ROBOT_PATHS.stateDir,
    telemetryRule: input.telemetryRule,
    provisioning: {
      templateName: input.templateName,
      claimCertificateFile: `${ROBOT_PATHS.claimDir}/${CLAIM_CERTIFICATE_FILE}`,
      claimPrivateKeyFile: `${ROBOT_PATHS.claimDir}/${CLAIM_PRIVATE_KEY_FILE}`,
      serialSource: 'raspberry-pi',
      model: input.model,
      batch: input.batchId,
    },
  };
  return canonicalJson(config);
}

/** JSON with every object's keys sorted, two-space indented, with a final newline. */
export function canonicalJson(value: unknown): string {
  const sorted = (item: unknown): unknown =>
    Array.isArray(item)
      ? item.map(sorted)
      : item !== null && typeof item === 'object'
        ? Object.fromEntries(Object.keys(item).sort().map((key) => [key, sorted((item as Record<string, unknown>)[key])]))
        : item;
  return `${JSON.stringify(sorted(value), null, 2)}\n`;
}

/**
 * The agent's unit. Restarts after any failure, for ever (the agent exits 78/69 when its first connection fails:
 * StartLimitIntervalSec=0 keeps a robot that waits for its network or clock from hitting the start limit). Runs as
 * the unprivileged `heartbeat` user with the file system read-only but for its state dir. Deliberately NOT set:
 * MemoryDenyWriteExecute (V8's JIT needs writable+executable pages: Node would crash), ProtectProc=invisible and
 * PrivateUsers (the agent must see the LeRobot processes of other users in /proc to detect teleoperation).
 */
export function systemdUnit(input: BootBundleInput): string {
  return `# Lekiwi Heartbeat agent — boot bundle of batch ${input.batchId} (npm run factory -- bundle).
[Unit]
Description=Lekiwi Heartbeat agent
Wants=network-online.target
After=network-online.target time-sync.target
# The agent exits 78 (configuration, certificate, clock) or 69 (endpoint unreachable) when its first connection
# fails; it is restarted every RestartSec for ever instead of hitting the start limit.
StartLimitIntervalSec=0

[Service]
Type=simple
User=${AGENT_USER}
Group=${AGENT_USER}
ExecStart=${input.nodePath} ${input.agentEntry} --config ${ROBOT_PATHS.configFile}
Restart=on-failure
RestartSec=10
# The agent stops within 15 s of SIGTERM (teleoperation monitor, MQTT DISCONNECT, queue closed).
TimeoutStopSec=20
StateDirectory=heartbeat
StateDirectoryMode=0700
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=${ROBOT_PATHS.stateDir}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=
# AF_NETLINK: the sock_diag co-process reads TCP counters (teleoperation detection).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# Not MemoryDenyWriteExecute: Node's JIT needs it off. Not ProtectProc=invisible: the agent watches other users' processes.

[Install]
WantedBy=multi-user.target
`;
}

/**
 * install.sh: run as root from the bundle's folder (cloud-init does, on first boot; a person may, again and again:
 * the result is the same). Creates the `heartbeat` user, installs the claim credentials (readable by the agent only),
 * the CA, agent.json with `thingName` = `<model>-<serial>` from the hardware serial (HEARTBEAT_SERIAL overrides it),
 * the unit, and (re)starts the agent.
 */
export function installScript(input: BootBundleInput): string {
  const caFile = caFileName(input.target);
  return `#!/bin/sh
# Lekiwi Heartbeat boot bundle of batch ${input.batchId} (${input.model}): installs the agent's configuration.
# Idempotent: running it again gives the same result. Usage: sudo sh install.sh (from any folder).
set -eu

BUNDLE_DIR=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
# Tests only: a folder standing for / (never set on a robot).
ROOT=\${HEARTBEAT_ROOT:-}
MODEL=${input.model}
NODE=${input.nodePath}
AGENT_ENTRY=${input.agentEntry}
AGENT_USER=${AGENT_USER}
CONFIG_DIR=${ROBOT_PATHS.configDir}
CLAIM_DIR=${ROBOT_PATHS.claimDir}
STATE_DIR=${ROBOT_PATHS.stateDir}
UNIT=${UNIT_NAME}

fail() {
  echo "heartbeat install: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run it as root: sudo sh $0"
for file in agent.json ${CLAIM_CERTIFICATE_FILE} ${CLAIM_PRIVATE_KEY_FILE} ${caFile} "$UNIT"; do
  [ -f "$BUNDLE_DIR/$file" ] || fail "$BUNDLE_DIR/$file is missing: copy the whole bundle"
done
[ -x "$NODE" ] || fail "no Node.js at $NODE: the image must carry Node 20 or later"
NODE_MAJOR=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || fail "Node.js at $NODE is $NODE_MAJOR.x: the agent needs 20 or later"
[ -f "$ROOT$AGENT_ENTRY" ] || fail "no agent at $AGENT_ENTRY: the image must carry the agent's bundle"

# The hardware serial names the robot: never the certificate, the hostname or machine-id (a re-image keeps it).
SERIAL=\${HEARTBEAT_SERIAL:-}
if [ -z "$SERIAL" ] && [ -r "$ROOT/proc/device-tree/serial-number" ]; then
  SERIAL=$(tr -d '\\000' <"$ROOT/proc/device-tree/serial-number")
fi
if [ -z "$SERIAL" ] && [ -r "$ROOT/proc/cpuinfo" ]; then
  SERIAL=$(sed -n 's/^Serial[[:space:]]*:[[:space:]]*//p' "$ROOT/proc/cpuinfo" | head -n 1)
fi
[ -n "$SERIAL" ] || fail "no hardware serial (/proc/device-tree/serial-number, /proc/cpuinfo): set HEARTBEAT_SERIAL"
case "$SERIAL" in
  *[!A-Za-z0-9_-]* | [_-]*) fail "serial '$SERIAL' must be letters, digits, '_' or '-'" ;;
esac
[ "\${#SERIAL}" -le 64 ] || fail "serial '$SERIAL' is longer than 64 characters"
THING_NAME="$MODEL-$SERIAL"

# cloud-init's users module usually made them already; the unit runs as User=/Group= heartbeat.
if ! getent group "$AGENT_USER" >/dev/null; then
  groupadd --system "$AGENT_USER"
fi
if ! getent passwd "$AGENT_USER" >/dev/null; then
  useradd --system --gid "$AGENT_USER" --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$AGENT_USER"
fi
install -d -m 0755 -o root -g root "$ROOT$CONFIG_DIR"
install -d -m 0750 -o root -g "$AGENT_USER" "$ROOT$CLAIM_DIR"
install -d -m 0700 -o "$AGENT_USER" -g "$AGENT_USER" "$ROOT$STATE_DIR"
install -m 0644 -o root -g root "$BUNDLE_DIR/${caFile}" "$ROOT$CONFIG_DIR/${caFile}"
install -m 0640 -o root -g "$AGENT_USER" "$BUNDLE_DIR/${CLAIM_CERTIFICATE_FILE}" "$ROOT$CLAIM_DIR/${CLAIM_CERTIFICATE_FILE}"
install -m 0640 -o root -g "$AGENT_USER" "$BUNDLE_DIR/${CLAIM_PRIVATE_KEY_FILE}" "$ROOT$CLAIM_DIR/${CLAIM_PRIVATE_KEY_FILE}"

# agent.json = the bundle's, plus this robot's thing name; written whole, then renamed.
"$NODE" -e '
const [file, thingName] = process.argv.slice(1);
const config = JSON.parse(require("node:fs").readFileSync(file, "utf8"));
process.stdout.write(JSON.stringify({ ...config, thingName }, null, 2) + "\\n");
' "$BUNDLE_DIR/agent.json" "$THING_NAME" >"$ROOT$CONFIG_DIR/agent.json.tmp"
chown root:"$AGENT_USER" "$ROOT$CONFIG_DIR/agent.json.tmp"
chmod 0640 "$ROOT$CONFIG_DIR/agent.json.tmp"
mv -f "$ROOT$CONFIG_DIR/agent.json.tmp" "$ROOT$CONFIG_DIR/agent.json"

install -d -m 0755 "$ROOT/etc/systemd/system"
install -m 0644 -o root -g root "$BUNDLE_DIR/$UNIT" "$ROOT/etc/systemd/system/$UNIT"
systemctl daemon-reload
systemctl enable "$UNIT"
systemctl restart --no-block "$UNIT"
echo "heartbeat install: $THING_NAME (batch ${input.batchId}) installed; journalctl -u $UNIT shows the agent"
`;
}

/**
 * The #cloud-config: the `heartbeat` system user (no login, no password), every file of the bundle written to
 * BUNDLE_DIR (root only; after the users exist: `defer`), then install.sh.
 */
export function userData(input: BootBundleInput, files: readonly BundleFile[]): string {
  const lines = [
    '#cloud-config',
    `# Lekiwi Heartbeat boot bundle of batch ${input.batchId} (${input.model}): npm run factory -- bundle.`,
    '# Copy this file and meta-data to the boot partition of a Raspberry Pi OS image. No per-robot secret.',
    'users:',
    '  - default',
    `  - name: ${AGENT_USER}`,
    '    gecos: Lekiwi Heartbeat agent',
    '    system: true',
    '    lock_passwd: true',
    '    no_create_home: true',
    `    homedir: ${ROBOT_PATHS.stateDir}`,
    '    shell: /usr/sbin/nologin',
    'write_files:',
  ];
  for (const file of files) {
    lines.push(
      `  - path: ${ROBOT_PATHS.bundleDir}/${file.name}`,
      '    owner: root:root',
      `    permissions: '${file.mode.toString(8).padStart(4, '0')}'`,
      '    defer: true',
      `    content: ${blockScalar(file.content, '      ')}`,
    );
  }
  lines.push('runcmd:', `  - [sh, ${ROBOT_PATHS.bundleDir}/install.sh]`);
  return `${lines.join('\n')}\n`;
}

/** A YAML literal block scalar of `text` at `indent` (`|` keeps the final newline, `|-` when there is none). */
function blockScalar(text: string, indent: string): string {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (body === '' || /^\s/.test(body) || /[\r\t]/.test(body)) {
    throw new BootBundleError('a bundle file starts with white space or holds a tab or CR: it cannot be a YAML literal block');
  }
  const header = text.endsWith('\n') ? '|' : '|-';
  return `${header}\n${body.split('\n').map((line) => (line === '' ? '' : `${indent}${line}`)).join('\n')}`;
}

/** NoCloud's meta-data: one instance per batch (a re-flashed card is a new boot for cloud-init all the same). */
function metaData(input: BootBundleInput): string {
  return `instance-id: heartbeat-${input.batchId}\n`;
}

function manifest(input: BootBundleInput, files: readonly BundleFile[]): string {
  return canonicalJson({
    batch: input.batchId,
    model: input.model,
    target: input.target,
    iotEndpoint: `${input.iotEndpoint}:${input.iotPort}`,
    templateName: input.templateName,
    generatedAt: input.generatedAt.toISOString(),
    files: Object.fromEntries(files.map((file) => [file.name, `sha256:${createHash('sha256').update(file.content).digest('hex')}`])),
  });
}

/** The template name of a stage (or the local cloud's), unless one is given. */
export function templateNameFor(stage: string | undefined, given: string | undefined): string {
  return given ?? provisioningTemplateName(stage);
}
