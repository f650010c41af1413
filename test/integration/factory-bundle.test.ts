import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigError, parseAgentConfig } from '../../agent/config.js';
import { CertificateAuthority, certificateIdOf } from '../../local/certificate-authority.js';
import { localClaimCertificateIds } from '../../local/claim-certificates.js';

/**
 * `npm run factory -- bundle` (issue 11): the boot bundle for Raspberry Pi OS, checked by the tools the robot's OS
 * uses — Debian's cloud-init (`cloud-init schema`) and systemd (`systemd-analyze verify`) — and for what it must not
 * hold: any PEM but the batch's claim certificate and key and the root CA, anything per robot.
 */
const run = promisify(execFile);
let dir: string;
let stateDir: string;

async function factory(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/factory.ts', ...args], {
      env: { ...process.env, LOCAL_STATE_DIR: stateDir },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** A system tool the test needs, or a failure naming the Debian package to install. */
async function tool(name: string, debianPackage: string): Promise<string> {
  const found = await run('sh', ['-c', `command -v ${name}`]).catch(() => undefined);
  if (!found) throw new Error(`${name} is not installed: apt-get install -y ${debianPackage} (CI installs it; see .ci/run)`);
  return found.stdout.trim();
}

async function readBundle(out: string): Promise<Map<string, string>> {
  const names = (await readdir(out)).sort();
  return new Map(await Promise.all(names.map(async (name) => [name, await readFile(join(out, name), 'utf8')] as const)));
}

/** Every PEM block of a text, whole (BEGIN to END), its lines' indentation (YAML's, in user-data) removed. */
function pems(text: string): { label: string; pem: string }[] {
  return [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)].map((match) => ({
    label: match[1]!,
    pem: match[0].replace(/\n[ \t]+/g, '\n'),
  }));
}

async function localBundle(batch: string, out: string, extra: string[] = []) {
  const result = await factory(['bundle', '--batch', batch, '--model', 'lekiwi', '--out', out, '--node', process.execPath, ...extra]);
  expect(result, result.stderr).toMatchObject({ code: 0 });
  return readBundle(out);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'factory-bundle-'));
  stateDir = join(dir, 'state');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('factory bundle (local cloud)', () => {
  it('gives the same files twice, apart from the manifest timestamp; the claim key is readable by its owner only', async () => {
    const first = await localBundle('B-2026-12', join(dir, 'first'));
    const second = await localBundle('B-2026-12', join(dir, 'second'));
    expect([...first.keys()]).toEqual([
      'agent.json',
      'claim.pem.crt',
      'claim.private.key',
      'heartbeat-agent.service',
      'install.sh',
      'local-ca.pem',
      'manifest.json',
      'meta-data',
      'user-data',
    ]);
    const withoutTimestamp = (files: Map<string, string>) =>
      new Map([...files].map(([name, text]) => [name, name === 'manifest.json' ? text.replace(/"generatedAt": "[^"]+"/, '') : text]));
    expect(withoutTimestamp(second)).toEqual(withoutTimestamp(first));
    expect(first.get('manifest.json')).toMatch(/"generatedAt": "\d{4}-\d\d-\d\dT/);
    expect((await stat(join(dir, 'first', 'claim.private.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'first', 'user-data'))).mode & 0o777).toBe(0o600);
  });

  it('holds no PEM but the claim certificate, its key and the CA; the claim is the batch\'s, signed by the local CA', async () => {
    const files = await localBundle('B-PEM', join(dir, 'pem'));
    const claimCertificate = files.get('claim.pem.crt')!;
    const claimKey = files.get('claim.private.key')!;
    const ca = files.get('local-ca.pem')!;
    expect(pems(claimCertificate).map((p) => p.label)).toEqual(['CERTIFICATE']);
    expect(pems(claimKey).map((p) => p.label)).toEqual(['EC PRIVATE KEY']);
    expect(pems(ca).map((p) => p.label)).toEqual(['CERTIFICATE']);
    for (const [name, text] of files) {
      for (const { label, pem } of pems(text)) {
        const allowed = label === 'CERTIFICATE' ? [claimCertificate.trim(), ca.trim()] : [claimKey.trim()];
        expect(allowed, `${name} holds a ${label} that is neither the claim nor the CA`).toContain(pem);
      }
    }
    const certificate = new X509Certificate(claimCertificate);
    expect(certificate.subject).toBe('CN=heartbeat-claim-B-PEM');
    expect(certificate.checkPrivateKey(createPrivateKey(claimKey))).toBe(true);
    expect(certificate.verify(new X509Certificate(ca).publicKey)).toBe(true);
    expect(ca).toBe(await readFile(join(stateDir, 'ca', 'ca.pem'), 'utf8'));
    // Per batch, not per robot: another batch has another claim; nothing names a thing.
    const other = await localBundle('B-OTHER', join(dir, 'other'));
    expect(other.get('claim.pem.crt')).not.toBe(claimCertificate);
    // The local IoT Core finds the claims it is to admit in the state dir.
    const claims = await localClaimCertificateIds(stateDir);
    expect(claims.get(certificateIdOf(claimCertificate))).toBe('B-PEM');
    expect(claims.get(certificateIdOf(other.get('claim.pem.crt')!))).toBe('B-OTHER');
    expect(JSON.parse(files.get('agent.json')!)).not.toHaveProperty('thingName');
    for (const text of files.values()) expect(text).not.toMatch(/lekiwi-[A-Za-z0-9]/);
  });

  it('systemd-analyze verify accepts the unit without a warning; it restarts for ever, unprivileged, hardened but JIT-able', async () => {
    await tool('systemd-analyze', 'systemd');
    const files = await localBundle('B-UNIT', join(dir, 'unit'));
    const unitFile = join(dir, 'unit', 'heartbeat-agent.service');
    const verified = await run('systemd-analyze', ['verify', unitFile]).catch((error: { stderr: string }) => ({ stdout: '', stderr: error.stderr, failed: true }));
    expect(verified).not.toHaveProperty('failed');
    expect(verified.stderr.split('\n').filter((line) => line.includes(unitFile))).toEqual([]);
    const unit = files.get('heartbeat-agent.service')!;
    const settings = unit.split('\n').filter((line) => /^[A-Za-z]+=/.test(line));
    expect(settings).toEqual(
      expect.arrayContaining([
        'Restart=on-failure',
        'StartLimitIntervalSec=0',
        'User=heartbeat',
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'ReadWritePaths=/var/lib/heartbeat',
        'ProtectHome=yes',
        'PrivateTmp=yes',
        `ExecStart=${process.execPath} /opt/heartbeat/agent/main.mjs --config /etc/heartbeat/agent.json`,
      ]),
    );
    expect(settings.some((line) => line.startsWith('MemoryDenyWriteExecute='))).toBe(false);
    expect(settings.some((line) => line.startsWith('ProtectProc='))).toBe(false);
  });

  it('cloud-init schema accepts the user-data, which creates the no-login user, writes every file as is and runs install.sh', async () => {
    await tool('cloud-init', 'cloud-init');
    const files = await localBundle('B-CLOUD', join(dir, 'cloud'));
    const userData = join(dir, 'cloud', 'user-data');
    const schema = await run('cloud-init', ['schema', '--config-file', userData]).catch((error: { stdout: string; stderr: string }) => ({
      stdout: error.stdout,
      stderr: error.stderr,
    }));
    expect(`${schema.stdout}${schema.stderr}`.trim()).toBe(`Valid cloud-config: ${userData}`);
    // Parsed by the YAML library cloud-init itself uses.
    const parsed = JSON.parse(
      (await run('python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', userData])).stdout,
    ) as {
      users: (string | Record<string, unknown>)[];
      write_files: { path: string; content: string; permissions: string; defer: boolean }[];
      runcmd: string[][];
    };
    expect(files.get('user-data')!.startsWith('#cloud-config\n')).toBe(true);
    expect(parsed.users).toContainEqual(
      expect.objectContaining({ name: 'heartbeat', system: true, lock_passwd: true, shell: '/usr/sbin/nologin' }),
    );
    const written = new Map(parsed.write_files.map((file) => [file.path, file]));
    for (const name of ['agent.json', 'claim.pem.crt', 'claim.private.key', 'local-ca.pem', 'heartbeat-agent.service', 'install.sh']) {
      expect(written.get(`/etc/heartbeat/bundle/${name}`)?.content, name).toBe(files.get(name));
    }
    expect(written.get('/etc/heartbeat/bundle/claim.private.key')?.permissions).toBe('0600');
    expect(parsed.runcmd).toEqual([['sh', '/etc/heartbeat/bundle/install.sh']]);
  });

  it('install.sh is POSIX sh with set -eu; agent.json plus the thing name install.sh adds is a valid agent config', async () => {
    const files = await localBundle('B-CONFIG', join(dir, 'config'));
    await run('sh', ['-n', join(dir, 'config', 'install.sh')]);
    expect(files.get('install.sh')).toMatch(/^#!\/bin\/sh\n[\s\S]*\nset -eu\n/);
    const template = JSON.parse(files.get('agent.json')!) as Record<string, unknown>;
    const config = parseAgentConfig({ ...template, thingName: 'lekiwi-10000000abcdef12' }, '/etc/heartbeat/agent.json');
    expect(config.provisioning).toEqual({
      templateName: 'heartbeat-claim',
      claimCertificateFile: '/etc/heartbeat/claim/claim.pem.crt',
      claimPrivateKeyFile: '/etc/heartbeat/claim/claim.private.key',
      serialSource: 'raspberry-pi',
      model: 'lekiwi',
      batch: 'B-CONFIG',
    });
    expect(config.caFile).toBe('/etc/heartbeat/local-ca.pem');
    expect(() => parseAgentConfig({ ...template, thingName: 'xle-10000000abcdef12' }, '/etc/heartbeat/agent.json')).toThrow(
      /thingName: must be lekiwi-<serial>/,
    );
    const provisioning = template.provisioning as Record<string, unknown>;
    expect(() =>
      parseAgentConfig({ ...template, thingName: 'lekiwi-1', provisioning: { ...provisioning, claimKey: 'x' } }, '/etc/heartbeat/agent.json'),
    ).toThrow(AgentConfigError);
  });
});

/**
 * install.sh run for real, against a folder standing for / (HEARTBEAT_ROOT) with the commands that would change this
 * machine (id, getent, groupadd, useradd, chown, systemctl; `install` without its -o/-g) replaced by stubs that log.
 */
describe('install.sh', () => {
  let bundleDir: string;

  beforeAll(async () => {
    bundleDir = join(dir, 'install-bundle');
    await localBundle('B-INSTALL', bundleDir);
  });

  async function machine(name: string, proc: { deviceTreeSerial?: string; cpuinfo?: string }) {
    const root = join(dir, name);
    const stubs = join(root, 'stubs');
    await mkdir(join(root, 'proc', 'device-tree'), { recursive: true });
    await mkdir(join(root, 'opt', 'heartbeat', 'agent'), { recursive: true });
    await mkdir(stubs, { recursive: true });
    await writeFile(join(root, 'opt', 'heartbeat', 'agent', 'main.mjs'), '// the agent\n');
    if (proc.deviceTreeSerial !== undefined) await writeFile(join(root, 'proc', 'device-tree', 'serial-number'), proc.deviceTreeSerial);
    if (proc.cpuinfo !== undefined) await writeFile(join(root, 'proc', 'cpuinfo'), proc.cpuinfo);
    const log = join(root, 'commands.log');
    const stub = async (command: string, body: string) => {
      await writeFile(join(stubs, command), `#!/bin/sh\necho "${command} $*" >>"${log}"\n${body}\n`);
      await chmod(join(stubs, command), 0o755);
    };
    await stub('id', 'echo 0');
    // The user and group exist once the stubs of groupadd/useradd ran (a marker file each).
    await stub('getent', `[ -f "${root}/made-$1" ]`);
    await stub('groupadd', `touch "${root}/made-group"`);
    await stub('useradd', `touch "${root}/made-passwd"`);
    await stub('chown', 'true');
    await stub('systemctl', 'true');
    await stub('install', 'args=""; while [ $# -gt 0 ]; do case "$1" in -o|-g) shift 2 ;; *) args="$args \"$1\""; shift ;; esac; done; eval exec /usr/bin/install $args');
    const install = (env: Record<string, string> = {}) =>
      run('sh', [join(bundleDir, 'install.sh')], { env: { ...process.env, PATH: `${stubs}:${process.env.PATH}`, HEARTBEAT_ROOT: root, ...env } }).then(
        (result) => ({ code: 0, ...result }),
        (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
      );
    const commands = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((line) => line && !/^(id|getent|install|chown) /.test(line));
    return { root, install, commands };
  }

  it('installs the claim, the CA, the unit and agent.json named after the device-tree serial; again: the same, no new user', async () => {
    const robot = await machine('robot-dt', { deviceTreeSerial: '10000000abcdef12\0', cpuinfo: 'Serial\t\t: 99999999\n' });
    const first = await robot.install({ HEARTBEAT_SERIAL: '' });
    expect(first, first.stderr).toMatchObject({ code: 0 });
    expect(first.stdout).toContain('heartbeat install: lekiwi-10000000abcdef12 (batch B-INSTALL) installed');
    const configFile = join(robot.root, 'etc', 'heartbeat', 'agent.json');
    const config = parseAgentConfig(JSON.parse(await readFile(configFile, 'utf8')), '/etc/heartbeat/agent.json');
    expect(config.thingName).toBe('lekiwi-10000000abcdef12');
    expect(await readFile(join(robot.root, 'etc', 'heartbeat', 'claim', 'claim.private.key'), 'utf8')).toBe(
      await readFile(join(bundleDir, 'claim.private.key'), 'utf8'),
    );
    expect((await stat(join(robot.root, 'etc', 'heartbeat', 'claim', 'claim.private.key'))).mode & 0o777).toBe(0o640);
    expect((await stat(configFile)).mode & 0o777).toBe(0o640);
    expect(await readFile(join(robot.root, 'etc', 'systemd', 'system', 'heartbeat-agent.service'), 'utf8')).toBe(
      await readFile(join(bundleDir, 'heartbeat-agent.service'), 'utf8'),
    );
    expect(await readFile(join(robot.root, 'etc', 'heartbeat', 'local-ca.pem'), 'utf8')).toBe(await readFile(join(bundleDir, 'local-ca.pem'), 'utf8'));
    const firstConfig = await readFile(configFile, 'utf8');

    const second = await robot.install({ HEARTBEAT_SERIAL: '' });
    expect(second, second.stderr).toMatchObject({ code: 0 });
    expect(await readFile(configFile, 'utf8')).toBe(firstConfig);
    const commands = await robot.commands();
    expect(commands.filter((line) => /^(groupadd|useradd) /.test(line))).toEqual([
      'groupadd --system heartbeat',
      'useradd --system --gid heartbeat --home-dir /var/lib/heartbeat --no-create-home --shell /usr/sbin/nologin heartbeat',
    ]);
    expect(commands.filter((line) => line.startsWith('systemctl '))).toEqual([
      'systemctl daemon-reload',
      'systemctl enable heartbeat-agent.service',
      'systemctl restart --no-block heartbeat-agent.service',
      'systemctl daemon-reload',
      'systemctl enable heartbeat-agent.service',
      'systemctl restart --no-block heartbeat-agent.service',
    ]);
  });

  it("takes /proc/cpuinfo's Serial without a device tree, HEARTBEAT_SERIAL over both, and refuses a bad or missing serial", async () => {
    const cpuinfo = await machine('robot-cpuinfo', { cpuinfo: 'processor\t: 0\nSerial\t\t: 00000000c0ffee42\nModel\t\t: Raspberry Pi 4\n' });
    expect((await cpuinfo.install({ HEARTBEAT_SERIAL: '' })).stdout).toContain('lekiwi-00000000c0ffee42');
    expect((await cpuinfo.install({ HEARTBEAT_SERIAL: 'LK0001' })).stdout).toContain('lekiwi-LK0001');
    const bad = await cpuinfo.install({ HEARTBEAT_SERIAL: 'LK 0001;rm' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("serial 'LK 0001;rm' must be letters, digits, '_' or '-'");
    const none = await (await machine('robot-none', {})).install({ HEARTBEAT_SERIAL: '' });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no hardware serial (/proc/device-tree/serial-number, /proc/cpuinfo): set HEARTBEAT_SERIAL');
  });
});

describe('factory bundle (AWS)', () => {
  let claimCertificate: string;
  let claimKey: string;
  let otherKey: string;

  beforeAll(async () => {
    const issuer = await CertificateAuthority.create({ commonName: 'stand-in for AWS IoT' });
    const claim = await issuer.issueClientCertificate('claim');
    const other = await issuer.issueClientCertificate('other');
    claimCertificate = join(dir, 'aws-claim.pem.crt');
    claimKey = join(dir, 'aws-claim.private.key');
    otherKey = join(dir, 'other.private.key');
    await writeFile(claimCertificate, claim.certificatePem);
    await writeFile(claimKey, claim.privateKeyPem, { mode: 0o600 });
    await writeFile(otherKey, other.privateKeyPem, { mode: 0o600 });
  });

  const aws = (out: string, extra: string[] = []) => [
    'bundle', '--batch', 'B-AWS', '--model', 'xle', '--out', join(dir, out), '--node', process.execPath,
    '--iot-endpoint', 'abc123-ats.iot.eu-west-1.amazonaws.com', '--stage', 'prod', '--claim-cert', claimCertificate, ...extra,
  ];

  it('carries the claim given and Amazon Root CA 1 from the system store, with the stage\'s template and rule', async () => {
    const result = await factory(aws('aws', ['--claim-key', claimKey]));
    expect(result, result.stderr).toMatchObject({ code: 0 });
    const files = await readBundle(join(dir, 'aws'));
    expect(files.get('claim.pem.crt')).toBe(await readFile(claimCertificate, 'utf8'));
    expect(files.get('claim.private.key')).toBe(await readFile(claimKey, 'utf8'));
    expect(files.get('AmazonRootCA1.pem')).toBe(await readFile('/etc/ssl/certs/Amazon_Root_CA_1.pem', 'utf8'));
    expect(new X509Certificate(files.get('AmazonRootCA1.pem')!).subject).toMatch(/^CN=Amazon Root CA 1$/m);
    const config = JSON.parse(files.get('agent.json')!) as Record<string, unknown>;
    expect(config).toMatchObject({
      endpoint: 'abc123-ats.iot.eu-west-1.amazonaws.com',
      port: 8883,
      caFile: '/etc/heartbeat/AmazonRootCA1.pem',
      telemetryRule: 'heartbeat_telemetry_prod',
      provisioning: { templateName: 'heartbeat-prod-claim', model: 'xle', batch: 'B-AWS' },
    });
    expect(files.has('local-ca.pem')).toBe(false);

    // Over it, a local bundle would leave AmazonRootCA1.pem beside it: refused.
    const over = await factory(['bundle', '--batch', 'B-AWS', '--model', 'xle', '--out', join(dir, 'aws')]);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain('holds files that are not part of this bundle (AmazonRootCA1.pem): write it to an empty folder');
    expect(await readBundle(join(dir, 'aws'))).toEqual(files);
  });

  it('refuses a key that is not the claim certificate\'s, and a root CA that is not Amazon\'s, writing nothing', async () => {
    const mismatched = await factory(aws('mismatched', ['--claim-key', otherKey]));
    expect(mismatched.code).toBe(1);
    expect(mismatched.stderr).toContain(`${otherKey} is not the key of ${claimCertificate}`);
    const wrongCa = await factory(aws('wrong-ca', ['--claim-key', claimKey, '--root-ca', claimCertificate]));
    expect(wrongCa.code).toBe(1);
    expect(wrongCa.stderr).toContain('is not Amazon Root CA 1');
    await expect(readdir(join(dir, 'mismatched'))).rejects.toThrow(/ENOENT/);
    await expect(readdir(join(dir, 'wrong-ca'))).rejects.toThrow(/ENOENT/);
    const noKey = await factory(aws('no-key'));
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('Give both --claim-cert and --claim-key');
  });
});
