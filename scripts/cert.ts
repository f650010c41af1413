import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CertificateAuthority } from '../local/certificate-authority.js';
import { provisionThing } from '../local/thing-registry.js';

/**
 * `npm run cert -- <thingName>`: a robot certificate from the local CA, the thing registered (model from the
 * name), and an agent config pointing at the local cloud's MQTT endpoint.
 */
const USAGE = `Usage: npm run cert -- <thingName> [--keep-alive 30]

  thingName   lekiwi-<serial> or xle-<serial>, e.g. lekiwi-LK0001
Writes <state>/certs/<thingName>/ (certificate.pem.crt, private.pem.key, ca.pem, agent.json).
The state dir is LOCAL_STATE_DIR (default .local); the MQTT port is the running local cloud's, else MQTT_PORT or 8883.`;

let parsed;
try {
  parsed = parseArgs({ allowPositionals: true, options: { 'keep-alive': { type: 'string', default: '30' }, help: { type: 'boolean', short: 'h' } } });
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
  process.exit(2);
}
if (parsed.values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const [thingName, ...extra] = parsed.positionals;
if (!thingName || extra.length > 0) {
  process.stderr.write(`Give exactly one thing name.\n\n${USAGE}\n`);
  process.exit(2);
}
const keepAliveSeconds = Number(parsed.values['keep-alive']);
if (!Number.isInteger(keepAliveSeconds) || keepAliveSeconds < 1 || keepAliveSeconds > 1200) {
  process.stderr.write(`--keep-alive must be a whole number of seconds from 1 to 1200.\n`);
  process.exit(2);
}

const stateDir = resolve(process.env.LOCAL_STATE_DIR || '.local');
try {
  const endpoint = await runningEndpoint(stateDir);
  const ca = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
  const credentials = await provisionThing(stateDir, ca, thingName, { ...endpoint, keepAliveSeconds });
  const shown = (path: string) => relative(process.cwd(), path) || path;
  process.stdout.write(
    `Registered ${credentials.thing.thingName} (model ${credentials.thing.model}), certificate ${credentials.certificate.certificateId.slice(0, 12)}…\n` +
      `  certificate  ${shown(credentials.certificateFile)}\n  private key  ${shown(credentials.privateKeyFile)}\n` +
      `  CA           ${shown(credentials.caFile)}\n  agent config ${shown(credentials.agentConfigFile)}\n` +
      `Run it: npm run agent -- --config ${shown(credentials.agentConfigFile)}\n`,
  );
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
}

/** The MQTT endpoint of the local cloud using this state dir, if one wrote its endpoints; else the defaults. */
async function runningEndpoint(dir: string): Promise<{ endpoint: string; port: number }> {
  const fallback = { endpoint: 'localhost', port: Number(process.env.MQTT_PORT || 8883) };
  const text = await readFile(join(dir, 'endpoints.json'), 'utf8').catch(() => undefined);
  if (!text) return fallback;
  try {
    const endpoints = JSON.parse(text) as { mqttHost?: unknown; mqttPort?: unknown };
    if (typeof endpoints.mqttHost === 'string' && typeof endpoints.mqttPort === 'number') {
      return { endpoint: endpoints.mqttHost, port: endpoints.mqttPort };
    }
  } catch {
    // An unreadable endpoints file only loses the hint; the defaults still work.
  }
  return fallback;
}
