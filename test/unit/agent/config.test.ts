import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigError, loadAgentConfig } from '../../../agent/config.js';
import { DEFAULT_TELEMETRY_POLICY } from '../../../agent/core/telemetry-policy.js';
import { CertificateAuthority } from '../../../local/certificate-authority.js';
import { provisionThing, type ThingCredentials } from '../../../local/thing-registry.js';

let root: string;
let credentials: ThingCredentials;
let written: Record<string, unknown>;
let caseNumber = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'heartbeat-agent-config-'));
  const ca = await CertificateAuthority.create();
  credentials = await provisionThing(join(root, 'state'), ca, 'lekiwi-LK0001', { endpoint: 'localhost', port: 18883 });
  written = JSON.parse(await readFile(credentials.agentConfigFile, 'utf8')) as Record<string, unknown>;
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes `content` (an object as JSON, or raw text) as a config file of its own and returns its path. */
async function configFile(content: Record<string, unknown> | string): Promise<string> {
  caseNumber += 1;
  const path = join(root, `case-${caseNumber}.json`);
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

async function loadError(path: string): Promise<AgentConfigError> {
  const error = await loadAgentConfig(path).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(AgentConfigError);
  return error as AgentConfigError;
}

describe('agent config', () => {
  it('accepts the agent.json that provisionThing writes, with the defaults filled in', async () => {
    const config = await loadAgentConfig(credentials.agentConfigFile);
    expect(config).toMatchObject({
      endpoint: 'localhost',
      port: 18883,
      thingName: 'lekiwi-LK0001',
      clientId: 'lekiwi-LK0001',
      certificateFile: credentials.certificateFile,
      privateKeyFile: credentials.privateKeyFile,
      caFile: credentials.caFile,
      keepAliveSeconds: 30,
      stateDir: join(credentials.directory, 'agent-state'),
      basicIngest: true,
      telemetry: { sampleIntervalMs: 1_000, policy: DEFAULT_TELEMETRY_POLICY },
      reconnect: { minSeconds: 1, maxSeconds: 120 },
      delivery: { maxInFlightBatches: 4, ackTimeoutMs: 5_000 },
      firstConnectionBudgetSeconds: 60,
    });
  });

  it('takes the event delivery settings, each with its default', async () => {
    const both = await loadAgentConfig(await configFile({ ...written, delivery: { maxInFlightBatches: 8, ackTimeoutMs: 2_000 } }));
    expect(both.delivery).toEqual({ maxInFlightBatches: 8, ackTimeoutMs: 2_000 });
    const one = await loadAgentConfig(await configFile({ ...written, delivery: { ackTimeoutMs: 10_000 } }));
    expect(one.delivery).toEqual({ maxInFlightBatches: 4, ackTimeoutMs: 10_000 });
  });

  it('resolves relative paths against the config file, not the working directory', async () => {
    const folder = join(root, 'moved');
    await mkdir(join(folder, 'creds'), { recursive: true });
    for (const [name, from] of [
      ['cert.pem', credentials.certificateFile],
      ['key.pem', credentials.privateKeyFile],
      ['ca.pem', credentials.caFile],
    ] as const) {
      await writeFile(join(folder, 'creds', name), await readFile(from));
    }
    const path = join(folder, 'agent.json');
    await writeFile(
      path,
      JSON.stringify({
        ...written,
        certificateFile: 'creds/cert.pem',
        privateKeyFile: './creds/key.pem',
        caFile: 'creds/ca.pem',
        stateDir: 'state',
      }),
    );
    const config = await loadAgentConfig(path);
    expect(config.certificateFile).toBe(join(folder, 'creds', 'cert.pem'));
    expect(config.privateKeyFile).toBe(join(folder, 'creds', 'key.pem'));
    expect(config.caFile).toBe(join(folder, 'creds', 'ca.pem'));
    expect(config.stateDir).toBe(join(folder, 'state'));
  });

  it('takes telemetry overrides, basicIngest: false, a matching clientId and a short keep-alive when allowed', async () => {
    const config = await loadAgentConfig(
      await configFile({
        ...written,
        clientId: 'lekiwi-LK0001',
        basicIngest: false,
        keepAliveSeconds: 5,
        allowShortKeepAlive: true,
        telemetry: { sampleIntervalMs: 250, minIntervalMs: 1_000, deadbands: { cpuPercent: 10 } },
      }),
    );
    expect(config.basicIngest).toBe(false);
    expect(config.keepAliveSeconds).toBe(5);
    expect(config.telemetry.sampleIntervalMs).toBe(250);
    expect(config.telemetry.policy.minIntervalMs).toBe(1_000);
    expect(config.telemetry.policy.maxIntervalMs).toBe(DEFAULT_TELEMETRY_POLICY.maxIntervalMs);
    expect(config.telemetry.policy.deadbands).toEqual({ ...DEFAULT_TELEMETRY_POLICY.deadbands, cpuPercent: 10 });
  });

  it('says so when the file is missing', async () => {
    const error = await loadError(join(root, 'nowhere.json'));
    expect(error.message).toMatch(/nowhere\.json cannot be read \(no such file\)/);
    expect(error.message).toMatch(/--config/);
  });

  it('says so when the file is not JSON', async () => {
    const error = await loadError(await configFile('{ "endpoint": "localhost", '));
    expect(error.message).toMatch(/is not JSON/);
  });

  it.each([
    ['endpoint', { endpoint: '' }, /endpoint: must be a host name/],
    ['port', { port: 70_000 }, /port:/],
    ['thingName', { thingName: 'robot 7' }, /thingName: must be <model>-<serial>/],
    ['clientId', { clientId: 'lekiwi-LK0002' }, /clientId: must equal thingName \(lekiwi-LK0001\)/],
    ['keepAliveSeconds (below IoT Core)', { keepAliveSeconds: 10 }, /keepAliveSeconds: must be 30–1200.*allowShortKeepAlive/],
    ['keepAliveSeconds (above IoT Core)', { keepAliveSeconds: 1_201 }, /keepAliveSeconds:/],
    ['basicIngest', { basicIngest: 'yes' }, /basicIngest:/],
    ['telemetry.sampleIntervalMs', { telemetry: { sampleIntervalMs: 5 } }, /telemetry\.sampleIntervalMs:/],
    ['telemetry.deadbands.load1', { telemetry: { deadbands: { load1: -1 } } }, /telemetry\.deadbands\.load1:/],
    [
      'telemetry.maxIntervalMs (below the minimum)',
      { telemetry: { minIntervalMs: 10_000, maxIntervalMs: 5_000 } },
      /telemetry\.maxIntervalMs: must be at least minIntervalMs/,
    ],
    ['reconnect.maxSeconds', { reconnect: { minSeconds: 10, maxSeconds: 5 } }, /reconnect\.maxSeconds:/],
    ['firstConnectionBudgetSeconds', { firstConnectionBudgetSeconds: 0 }, /firstConnectionBudgetSeconds:/],
    ['delivery.maxInFlightBatches', { delivery: { maxInFlightBatches: 0 } }, /delivery\.maxInFlightBatches:/],
    ['delivery.ackTimeoutMs', { delivery: { ackTimeoutMs: 120_000 } }, /delivery\.ackTimeoutMs:/],
    ['delivery (an unknown field)', { delivery: { window: 3 } }, /delivery: unknown field\(s\) window/],
    ['an unknown field', { keepAlive: 60 }, /unknown field\(s\) keepAlive/],
    ['stateDir (missing)', { stateDir: undefined }, /stateDir:/],
  ])('names the bad field: %s', async (_case, change, message) => {
    const error = await loadError(await configFile({ ...written, ...change }));
    expect(error.message).toMatch(message);
    expect(error.problems.length).toBeGreaterThan(0);
  });

  it.each([
    ['certificateFile', 'no such file'],
    ['privateKeyFile', 'no such file'],
    ['caFile', 'no such file'],
  ])('names a %s that cannot be read', async (field, reason) => {
    const missing = join(root, `missing-${field}.pem`);
    const error = await loadError(await configFile({ ...written, [field]: missing }));
    expect(error.message).toContain(`${field} ${missing} cannot be read (${reason})`);
    expect(error.problems).toEqual([{ field, message: 'cannot be read' }]);
  });

  it('names a file of the wrong kind (the key where the certificate belongs)', async () => {
    const error = await loadError(await configFile({ ...written, certificateFile: credentials.privateKeyFile }));
    expect(error.message).toMatch(/certificateFile .* is not a PEM certificate/);
  });

  it('names a private key that is not the certificate\'s (TLS would only say it cannot build its context)', async () => {
    // Given the key of another certificate in place of the robot's own
    const other = await (await CertificateAuthority.create()).issueClientCertificate('lekiwi-LK0001');
    const otherKey = join(root, 'other-robot.key');
    await writeFile(otherKey, other.privateKeyPem);

    // When the config is loaded
    const error = await loadError(await configFile({ ...written, privateKeyFile: otherKey }));

    // Then the key is named as not belonging to the certificate
    expect(error.message).toContain(`privateKeyFile ${otherKey} is not the key of certificateFile ${credentials.certificateFile}`);
    expect(error.problems).toEqual([{ field: 'privateKeyFile', message: 'does not match certificateFile' }]);
  });

  it('names a folder given as a file', async () => {
    const error = await loadError(await configFile({ ...written, caFile: root }));
    expect(error.message).toMatch(/caFile .* cannot be read \(it is a folder\)/);
  });
});
