import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { expect, vi } from 'vitest';
import { CertificateAuthority, type IssuedCertificate } from '../../local/certificate-authority.js';
import { POLL } from './poll.js';

/**
 * A real Mosquitto 2 broker (Debian's /usr/sbin/mosquitto) for interop tests: mTLS on a free loopback port with the
 * certificate's CN as the username, and an ACL that mirrors the thing policy in infra/stacks/iot-stack.ts as far as
 * Mosquitto can express it. Everything lives in a temp dir that `stop()` removes.
 */

export const MOSQUITTO_BINARY = '/usr/sbin/mosquitto';

export interface MosquittoCredentials {
  readonly certificateFile: string;
  readonly privateKeyFile: string;
}

export interface StartMosquittoOptions {
  /** CNs of admin clients that may read and write every topic (observers, command senders). */
  readonly admins?: readonly string[];
  /** The CA that signs the broker's and clients' certificates; default a new one. */
  readonly ca?: CertificateAuthority;
  /** Listen here instead of on a fresh free port (a restart on the same port). */
  readonly port?: number;
  /** Extra `mosquitto.conf` lines. */
  readonly extraConfig?: readonly string[];
}

export interface Mosquitto {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly directory: string;
  readonly ca: CertificateAuthority;
  readonly caFile: string;
  /** Everything the broker logged so far (log_type all). */
  log(): string;
  /** Waits (the default wait, POLL) until the log matches `pattern`; fails with the log tail, at once if mosquitto exits. */
  waitForLog(pattern: RegExp): Promise<RegExpMatchArray>;
  /** Issues a client certificate (CN = `commonName`) into the temp dir. */
  issueClient(commonName: string): Promise<MosquittoCredentials & { readonly certificate: IssuedCertificate }>;
  stop(): Promise<void>;
}

/**
 * The thing policy in Mosquitto's terms (`%u` = the certificate's CN = thing name): publish own data and command
 * replies, read own commands, and AWS IoT Jobs topics. Basic Ingest (`$aws/rules/<rule>/dt/…`) cannot be expressed:
 * Mosquitto treats `$`-topics as ordinary topics under a different root, so agents talk to Mosquitto without it.
 */
export const THING_ACL = [
  'pattern write dt/heartbeat/%u/#',
  'pattern read cmd/heartbeat/%u/#',
  'pattern write cmd/heartbeat/%u/+/reply',
  'pattern readwrite $aws/things/%u/jobs/#',
] as const;

export async function startMosquitto(options: StartMosquittoOptions = {}): Promise<Mosquitto> {
  const directory = await mkdtemp(join(tmpdir(), 'heartbeat-mosquitto-'));
  const ca = options.ca ?? (await CertificateAuthority.create({ commonName: 'Heartbeat test CA' }));
  const caFile = join(directory, 'ca.pem');
  await writeFile(caFile, ca.certificatePem);
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  const serverCert = join(directory, 'server.pem');
  const serverKey = join(directory, 'server.key');
  await writeFile(serverCert, server.certificatePem);
  await writeFile(serverKey, server.privateKeyPem, { mode: 0o600 });

  const aclFile = join(directory, 'acl');
  const admins = options.admins ?? [];
  await writeFile(aclFile, [...admins.flatMap((admin) => [`user ${admin}`, 'topic readwrite #', '']), ...THING_ACL, ''].join('\n'));

  const port = options.port ?? (await freePort());
  const configFile = join(directory, 'mosquitto.conf');
  await writeFile(
    configFile,
    [
      // Run as root, Mosquitto would drop to the `mosquitto` user, which cannot read a 0600 key in our temp dir.
      `user ${userInfo().username}`,
      'persistence false',
      'log_dest stderr',
      'log_type all',
      'connection_messages true',
      'log_timestamp true',
      'per_listener_settings false',
      'allow_anonymous false',
      `acl_file ${aclFile}`,
      `listener ${port} 127.0.0.1`,
      `cafile ${caFile}`,
      `certfile ${serverCert}`,
      `keyfile ${serverKey}`,
      'require_certificate true',
      'use_identity_as_username true',
      ...(options.extraConfig ?? []),
      '',
    ].join('\n'),
  );

  const child = spawn(MOSQUITTO_BINARY, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  /** Rejects once mosquitto has exited, with its log: a wait for it to do something ends there, not at its timeout. */
  const died = exited.then(() => {
    throw new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}):\n${output.slice(-3000)}`);
  });
  died.catch(() => undefined); // only raced against waits; a stop() is no failure

  const waitForLog = (pattern: RegExp): Promise<RegExpMatchArray> =>
    Promise.race([
      vi.waitFor(() => {
        const match = output.match(pattern);
        expect(match, `mosquitto to log ${pattern}; log tail:\n${output.slice(-3000)}`).not.toBeNull();
        return match!;
      }, POLL),
      died,
    ]);

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killed);
    }
    await rm(directory, { recursive: true, force: true });
  };

  try {
    await Promise.race([waitForTcp(port, () => output), died]);
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    host: '127.0.0.1',
    port,
    directory,
    ca,
    caFile,
    log: () => output,
    waitForLog,
    async issueClient(commonName) {
      const certificate = await ca.issueClientCertificate(commonName);
      const certificateFile = join(directory, `${commonName}.crt`);
      const privateKeyFile = join(directory, `${commonName}.key`);
      await writeFile(certificateFile, certificate.certificatePem);
      await writeFile(privateKeyFile, certificate.privateKeyPem, { mode: 0o600 });
      return { certificateFile, privateKeyFile, certificate };
    },
    stop,
  };
}

/** A port the kernel just handed out on loopback (closed again for Mosquitto to bind). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Waits until something accepts TCP connections on the loopback port (a process starting: 20 s, not the default). */
function waitForTcp(port: number, output: () => string): Promise<void> {
  return vi.waitFor(
    () =>
      new Promise<void>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve();
        });
        socket.once('error', () => reject(new Error(`mosquitto did not listen on ${port}:\n${output().slice(-3000)}`)));
      }),
    { ...POLL, timeout: 20_000 },
  );
}
