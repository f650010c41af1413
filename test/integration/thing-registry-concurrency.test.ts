import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { ThingRegistry } from '../../local/thing-registry.js';

/**
 * things.json is read, changed and replaced by several writers at once: `npm run cert` in other processes, and the
 * broker's registry and the certificate retirer in the local cloud. The lock file (O_EXCL) around each
 * read-modify-write makes every writer work on the file as the previous one left it: no entry is lost.
 */
const run = promisify(execFile);
let stateDir: string;

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'thing-registry-concurrency-'));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

const id = (n: number) => n.toString(16).padStart(64, '0');

describe('thing registry writers at once', () => {
  it('two registries on one file, 40 attaches interleaved: all 40 things are there', async () => {
    const [one, two] = [ThingRegistry.in(stateDir), ThingRegistry.in(stateDir)];
    await Promise.all(Array.from({ length: 40 }, (_, n) => (n % 2 === 0 ? one : two).attach(`lekiwi-C${String(n).padStart(4, '0')}`, id(n + 1))));
    const names = (await ThingRegistry.in(stateDir).list()).map((thing) => thing.thingName);
    expect(names).toHaveLength(40);
    expect((await readdir(stateDir)).filter((name) => name.endsWith('.lock') || name.endsWith('.tmp'))).toEqual([]);
  });

  it('`npm run cert` twice in parallel on a fresh state dir: both robots registered, both signed by the one CA on disk', async () => {
    const cert = (thingName: string) =>
      run(process.execPath, ['--import', 'tsx', 'scripts/cert.ts', thingName], { env: { ...process.env, LOCAL_STATE_DIR: stateDir }, timeout: 60_000 });
    await Promise.all([cert('lekiwi-P1A'), cert('xle-P1B')]);
    const names = (await ThingRegistry.in(stateDir).list()).map((thing) => thing.thingName);
    expect(names).toEqual(['lekiwi-P1A', 'xle-P1B']);
    // Both runs found no CA: one made it, the other waited for it (no second CA overwrote the first).
    const ca = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
    const caCertificate = new X509Certificate(ca.certificatePem);
    for (const thing of names) {
      const robot = new X509Certificate(await readFile(join(stateDir, 'certs', thing, 'certificate.pem.crt'), 'utf8'));
      expect(robot.verify(caCertificate.publicKey), thing).toBe(true);
    }
  }, 120_000);

  it('two processes writing 30 things each at the same time: all 60 are there', async () => {
    // Process start-up takes seconds, a write milliseconds: each process waits for a shared start signal (a file)
    // and then writes in a burst, so the two bursts overlap and every read-modify-write races the other process's.
    const go = join(stateDir, 'go');
    const registryModule = new URL('../../local/thing-registry.ts', import.meta.url).href;
    const writer = (prefix: string) => `
      const { existsSync } = await import('node:fs');
      const { ThingRegistry } = await import(${JSON.stringify(registryModule)});
      while (!existsSync(${JSON.stringify(go)})) await new Promise((resolve) => setTimeout(resolve, 5));
      for (let n = 0; n < 30; n++) {
        // A fresh registry each time, as a fresh \`npm run cert\` would be.
        await ThingRegistry.in(${JSON.stringify(stateDir)}).attach('lekiwi-${prefix}' + n, ('${prefix === 'A' ? 'a' : 'b'}' + n.toString(16)).padStart(64, '0'));
      }`;
    const spawn = (prefix: string) => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', writer(prefix)], { timeout: 90_000 });
    const both = Promise.all([spawn('A'), spawn('B')]);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await writeFile(go, '');
    await both;
    expect(await ThingRegistry.in(stateDir).list()).toHaveLength(60);
  }, 120_000);

  it('two first opens of the local CA at once make one CA, not two (each would sign robots the other refuses)', async () => {
    const dir = join(stateDir, 'ca');
    const [one, two] = await Promise.all([CertificateAuthority.openOrCreate(dir), CertificateAuthority.openOrCreate(dir)]);
    expect(two.certificatePem).toBe(one.certificatePem);
    expect((await CertificateAuthority.openOrCreate(dir)).certificatePem).toBe(one.certificatePem);
  });

  it('breaks a lock its holder left behind when it died', async () => {
    await writeFile(join(stateDir, 'things.json.lock'), '2147483646\n'); // no such process
    await ThingRegistry.in(stateDir).attach('lekiwi-S0001', id(1));
    expect(JSON.parse(await readFile(join(stateDir, 'things.json'), 'utf8')).things['lekiwi-S0001']).toBeDefined();
  });
});
