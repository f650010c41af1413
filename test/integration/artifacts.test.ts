import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestSha256, sha256Hex } from '../../functions/app/deployments/release-manifest.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { ARTIFACT_OBJECT_PATH_PREFIX, LocalArtifactStore } from '../../local/artifact-store.js';
import { localArtifactUrlsRule } from '../../local/artifact-urls.js';
import { startHttpGateway, type HttpGateway } from '../../local/http-gateway.js';
import { startIotBroker, type BrokerLogEntry, type IotBroker } from '../../local/iot-broker.js';
import { statePaths } from '../../local/local-state.js';
import { provisionThing, ThingRegistry } from '../../local/thing-registry.js';
import { ARTIFACT_COMMANDS, ArtifactUrlReply, artifactTopics } from '../../schemas/deployments.js';
import { topics } from '../../schemas/topics.js';

/**
 * Releases and robots' downloads with the real local parts (issue 12): `npm run release` as its own process on a temp
 * tree into the local artifact store; the store's presigned-URL stand-ins served by the local HTTP gateway; and a
 * robot over mTLS MQTT asking the local IoT Core's `heartbeat_artifact_urls` rule for URLs, then downloading them.
 */
const run = promisify(execFile);
let dir: string;
let stateDir: string;
let tree: string;
let store: LocalArtifactStore;
let gateway: HttpGateway;

async function release(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/release.ts', ...args], {
      env: { ...process.env, LOCAL_STATE_DIR: stateDir },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}
const field = (stdout: string, name: string) => new RegExp(`^  ${name} +(\\S+)`, 'm').exec(stdout)?.[1];

/** Every object file in the store. */
async function storedObjects(): Promise<string[]> {
  const root = join(statePaths(stateDir).artifacts, 'objects');
  const names: string[] = [];
  for (const prefix of await readdir(root)) names.push(...(await readdir(join(root, prefix))));
  return names.sort();
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'artifacts-'));
  stateDir = join(dir, 'state');
  tree = join(dir, 'tree');
  await mkdir(join(tree, 'bin'), { recursive: true });
  await mkdir(join(tree, 'config', 'lerobot'), { recursive: true });
  await writeFile(join(tree, 'bin', 'start.sh'), '#!/bin/sh\nexec node agent.mjs\n', { mode: 0o755 });
  await writeFile(join(tree, 'config', 'lerobot', 'lekiwi.yaml'), 'port: 5555\n');
  await writeFile(join(tree, 'config', 'copy.yaml'), 'port: 5555\n'); // the same bytes: one object
  await writeFile(join(tree, 'agent.mjs'), Buffer.alloc(300_000, 7));
  await writeFile(join(tree, 'empty'), '');
  store = await LocalArtifactStore.open({ root: statePaths(stateDir).artifacts, baseUrl: () => gateway.url });
  gateway = await startHttpGateway({
    port: 0,
    authorizer: { issuer: 'http://localhost:1', audience: ['test'] },
    integration: async () => ({ statusCode: 500 }),
    prefixRoutes: { [`GET ${ARTIFACT_OBJECT_PATH_PREFIX}`]: (request) => store.serve(request) },
    log: () => undefined,
  });
});

afterAll(async () => {
  await gateway?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('npm run release', () => {
  it('stores every object once and the release; a second run uploads nothing; one changed file uploads one object', async () => {
    const first = await release(['--dir', tree, '--version', '1.0.0', '--model', 'lekiwi']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('Release 1.0.0 stored.');
    expect(field(first.stdout, 'files')).toBe('5');
    expect(field(first.stdout, 'new objects')).toBe('4'); // the two identical yaml files are one object
    expect(field(first.stdout, 'bytes uploaded')).toBe(String(300_000 + 'port: 5555\n'.length + '#!/bin/sh\nexec node agent.mjs\n'.length));

    const stored = await store.getRelease('1.0.0');
    expect(stored?.summary).toMatchObject({ version: '1.0.0', model: 'lekiwi', fileCount: 5, manifestSha256: field(first.stdout, 'manifest') });
    expect(manifestSha256(stored!.manifest)).toBe(stored!.summary.manifestSha256);
    expect(stored!.manifest.files.map((f) => [f.path, f.mode])).toEqual([
      ['agent.mjs', 0o644],
      ['bin/start.sh', 0o755],
      ['config/copy.yaml', 0o644],
      ['config/lerobot/lekiwi.yaml', 0o644],
      ['empty', 0o644],
    ]);
    const objects = [...new Set(stored!.manifest.files.map((f) => f.sha256)), stored!.summary.manifestSha256].sort();
    expect(await storedObjects()).toEqual(objects);

    const again = await release(['--dir', tree, '--version', '1.0.0', '--model', 'lekiwi']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('already stored with the same files: nothing changed');
    expect(field(again.stdout, 'new objects')).toBe('0');
    expect(field(again.stdout, 'bytes uploaded')).toBe('0');
    expect(await storedObjects()).toEqual(objects);

    await writeFile(join(tree, 'config', 'lerobot', 'lekiwi.yaml'), 'port: 5556\n');
    const conflict = await release(['--dir', tree, '--version', '1.0.0', '--model', 'lekiwi']);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain('release 1.0.0 already exists with other content');
    expect(await storedObjects()).toEqual(objects); // refused before anything was uploaded

    const next = await release(['--dir', tree, '--version', '1.0.1', '--model', 'lekiwi']);
    expect(next.code, next.stderr).toBe(0);
    expect(field(next.stdout, 'new objects')).toBe('1');
    expect(field(next.stdout, 'bytes uploaded')).toBe(String('port: 5556\n'.length));
    expect((await storedObjects()).length).toBe(objects.length + 2); // the changed file and the new manifest
    expect((await store.listReleases()).map((r) => r.version)).toEqual(['1.0.1', '1.0.0']);
  }, 180_000); // five CLI processes (node + tsx each) on a shared machine

  it('refuses a symlink, a missing folder and a bad version, naming the problem', async () => {
    const linked = join(dir, 'linked');
    await mkdir(join(linked, 'conf'), { recursive: true });
    await writeFile(join(linked, 'conf', 'a'), 'a');
    await symlink('conf/a', join(linked, 'current'));
    const withLink = await release(['--dir', linked, '--version', '2.0.0']);
    expect(withLink.code).toBe(1);
    expect(withLink.stderr).toContain('current: a symbolic link (→ conf/a)');

    const missing = await release(['--dir', join(dir, 'nope'), '--version', '2.0.0']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(dir, 'nope')}: no such folder`);

    const badVersion = await release(['--dir', tree, '--version', '../2']);
    expect(badVersion.code).toBe(1);
    expect(badVersion.stderr).toContain('--version "../2"');
    expect(await store.getRelease('2.0.0')).toBeNull();
  }, 120_000);
});

describe('the local presigned URLs', () => {
  const content = Buffer.from('the bytes a robot downloads\n');
  const sha = sha256Hex(content);

  it('serve the object with its Content-Length until they expire', async () => {
    await store.putObject(sha, { bytes: content }, content.length);
    const response = await fetch(await store.presignObject(sha, 60));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(content.length));
    expect(Buffer.from(await response.arrayBuffer()).equals(content)).toBe(true);
  });

  it('stream a large object whole', async () => {
    const large = Buffer.alloc(5 * 1024 * 1024, 3);
    const largeSha = sha256Hex(large);
    await store.putObject(largeSha, { bytes: large }, large.length);
    const response = await fetch(await store.presignObject(largeSha, 60));
    expect(response.headers.get('content-length')).toBe(String(large.length));
    expect(sha256Hex(Buffer.from(await response.arrayBuffer()))).toBe(largeSha);
  });

  it('answer 403 saying "expired" for an expired URL (signed by another store on the same state dir)', async () => {
    const past = await LocalArtifactStore.open({ root: statePaths(stateDir).artifacts, baseUrl: gateway.url, now: () => new Date(Date.now() - 3_600_000) });
    const response = await fetch(await past.presignObject(sha, 60));
    expect(response.status).toBe(403);
    expect(((await response.json()) as { message: string }).message).toMatch(/^the URL expired at /);
  });

  it('answer 403 saying "forged" for an altered signature, expiry or object', async () => {
    const url = new URL(await store.presignObject(sha, 60));
    const signature = url.searchParams.get('signature')!;
    const forged = new URL(url);
    forged.searchParams.set('signature', `${signature[0] === 'a' ? 'b' : 'a'}${signature.slice(1)}`);
    const extended = new URL(url);
    extended.searchParams.set('expires', String(Number(url.searchParams.get('expires')) + 3600));
    const otherObject = new URL(url.href.replace(sha, sha256Hex('another object')));
    const unsigned = new URL(url);
    unsigned.search = '';
    for (const altered of [forged, extended, otherObject]) {
      const response = await fetch(altered);
      expect(response.status, altered.href).toBe(403);
      expect(((await response.json()) as { message: string }).message).toContain('forged or was altered');
    }
    const bare = await fetch(unsigned);
    expect(bare.status).toBe(403);
    expect(((await bare.json()) as { message: string }).message).toContain('not a presigned URL');
  });

  it('answer 404 for an object the store does not have (with a valid signature)', async () => {
    const response = await fetch(await store.presignObject(sha256Hex('never stored'), 60));
    expect(response.status).toBe(404);
    expect(((await response.json()) as { message: string }).message).toContain('the store has no object');
  });
});

describe('download URLs for a robot, through the local IoT Core', () => {
  let ca: CertificateAuthority;
  let broker: IotBroker;
  let robot: MqttClient;
  const brokerLog: BrokerLogEntry[] = [];
  const replies: ArtifactUrlReply[] = [];
  const thing = 'lekiwi-artifacts-01';

  beforeAll(async () => {
    ca = await CertificateAuthority.create();
    const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
    broker = await startIotBroker({
      port: 0,
      caCertificatePem: ca.certificatePem,
      serverCertificatePem: server.certificatePem,
      serverPrivateKeyPem: server.privateKeyPem,
      registry: ThingRegistry.in(stateDir),
      rules: [
        localArtifactUrlsRule({
          store,
          replies: { send: (robotId, request, payload) => broker.publish(topics.command(robotId, request), payload) },
          log: (entry) => brokerLog.push(entry),
        }),
      ],
      log: (entry) => brokerLog.push(entry),
    });
    const credentials = await provisionThing(stateDir, ca, thing, { port: broker.port });
    const { readFile } = await import('node:fs/promises');
    robot = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
      protocolVersion: 4,
      clientId: thing,
      key: await readFile(credentials.privateKeyFile),
      cert: await readFile(credentials.certificateFile),
      ca: ca.certificatePem,
      reconnectPeriod: 0,
    });
    robot.on('message', (_topic, payload) => replies.push(ArtifactUrlReply.parse(JSON.parse(payload.toString()))));
    await robot.subscribeAsync(topics.command(thing, ARTIFACT_COMMANDS.urls), { qos: 1 });
  });

  afterAll(async () => {
    await robot?.endAsync();
    await broker?.stop();
  });

  const replyTo = async (requestId: string) => {
    await expect.poll(() => replies.find((r) => r.requestId === requestId)).toBeDefined();
    return replies.find((r) => r.requestId === requestId)!;
  };

  it('answers URLs for the objects the store has, `missing` for the others; the URLs download the bytes', async () => {
    const release = (await store.getRelease('1.0.0'))!;
    const wanted = release.manifest.files.map((f) => f.sha256);
    const unknown = sha256Hex('not in any release');
    const started = Date.now();
    await robot.publishAsync(artifactTopics.request(thing), JSON.stringify({ requestId: 'req-00000001', objects: [...wanted, unknown] }), { qos: 1 });
    const reply = await replyTo('req-00000001');
    if (!('urls' in reply)) throw new Error(`rejected: ${JSON.stringify(reply)}`);
    expect(reply.missing).toEqual([unknown]);
    expect(reply.urls.map((u) => u.sha256).sort()).toEqual([...new Set(wanted)].sort());
    // Valid for the default 15 minutes.
    expect(Date.parse(reply.expiresAt) - started).toBeGreaterThan(14 * 60_000);
    for (const { sha256, url, size } of reply.urls) {
      const response = await fetch(url);
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(bytes.length).toBe(size);
      expect(sha256Hex(bytes)).toBe(sha256);
    }
  });

  it('rejects a malformed request that has a requestId, naming the problem; drops one without', async () => {
    await robot.publishAsync(artifactTopics.request(thing), JSON.stringify({ requestId: 'req-00000002', objects: ['not-a-sha'] }), { qos: 1 });
    const reply = await replyTo('req-00000002');
    expect(reply).toEqual({ requestId: 'req-00000002', rejected: { reason: 'INVALID_REQUEST', message: expect.stringContaining('objects.0: must be 64 lower-case hex digits') } });

    await robot.publishAsync(artifactTopics.request(thing), JSON.stringify({ objects: [] }), { qos: 1 });
    await expect.poll(() => brokerLog.some((e) => String(e.message).includes('artifact URL request dropped: an artifact URL request without a valid requestId'))).toBe(true);
  });
});
