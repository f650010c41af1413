#!/usr/bin/env node
// What `npm start` and `npm test` need from the machine, checked before they begin, so a fresh machine gets one
// message naming everything that is missing and how to install it (Debian/Ubuntu package names), not a stack trace
// from the middle of a run. Plain Node, no dependencies: it must work before `npm ci` has run.
//
//   node scripts/preflight.mjs start   # npm's prestart
//   node scripts/preflight.mjs test    # npm's pretest
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';

const mode = process.argv[2] === 'test' ? 'test' : 'start';

/** @returns {string | undefined} the first line a command prints (stdout, else stderr), or undefined when it cannot run */
function firstLine(command, args) {
  const run = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  if (run.error) return undefined;
  return (run.stdout || run.stderr || '').split('\n')[0];
}

/** Java's major version from `java -version` ("17.0.9", "1.8.0_392" is 8). */
function javaMajor() {
  const line = firstLine('java', ['-version']);
  if (line === undefined) return undefined;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(line);
  if (!match) return 0;
  return match[1] === '1' ? Number(match[2]) : Number(match[1]);
}

function reachable(host, port) {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const problems = [];

const [nodeMajor] = process.versions.node.split('.').map(Number);
if (nodeMajor < 20) problems.push(`Node.js ${process.versions.node} is too old: Node.js 20 or newer is needed.`);

if (!existsSync('node_modules/.package-lock.json')) {
  problems.push('The dependencies are not installed: run `npm ci` first.');
}

const java = javaMajor();
if (java === undefined || java < 17) {
  problems.push(
    `${java === undefined ? 'Java is not on the PATH' : `Java ${java} is too old`}: DynamoDB Local needs Java 17 or newer ` +
      '(apt-get install -y openjdk-17-jre-headless).',
  );
}

if (mode === 'test') {
  if (!existsSync('/usr/sbin/mosquitto')) {
    problems.push("Mosquitto is missing: the agent's interop tests run Debian's broker (apt-get install -y mosquitto).");
  }
  if (firstLine('python3', ['--version']) === undefined) {
    problems.push("python3 is missing: the agent's socket counters run in it (apt-get install -y python3).");
  }
  if (firstLine('cloud-init', ['--version']) === undefined) {
    problems.push("cloud-init is missing: the factory's boot bundle is checked with it (apt-get install -y --no-install-recommends cloud-init).");
  }
  if (firstLine('systemd-analyze', ['--version']) === undefined) {
    problems.push("systemd-analyze is missing: the boot bundle's unit is checked with it (apt-get install -y systemd).");
  }
  if (!existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium')) {
    problems.push("Chromium is missing: the dashboard's browser tests drive Debian's chromium (apt-get install -y chromium).");
  }
  if (!existsSync('/etc/ssl/certs/Amazon_Root_CA_1.pem')) {
    problems.push('Amazon Root CA 1 is not in /etc/ssl/certs: an AWS boot bundle carries it (apt-get install -y ca-certificates).');
  }
  const url = new URL(process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  const port = Number(url.port || 5432);
  if (!(await reachable(url.hostname, port))) {
    problems.push(
      `No PostgreSQL server answers on ${url.hostname}:${port}: the read-model tests create their own databases in it ` +
        '(apt-get install -y postgresql, then pg_ctlcluster 15 main start; or set TEST_POSTGRES_URL to another server).',
    );
  }
}

if (problems.length > 0) {
  console.error(`\`npm ${mode}\` cannot run on this machine yet:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  process.exit(1);
}
