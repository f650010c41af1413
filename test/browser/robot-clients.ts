import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { TelemetrySample } from '../../schemas/device.js';
import { topics } from '../../schemas/topics.js';
import { issueCertificate } from '../support/local-cloud-process.js';

/**
 * Robots for the browser tests that are plain MQTT clients (mqtt.js with the robot's certificate from `npm run cert`),
 * for what the real agent cannot be told to do: report a CPU temperature of our choosing. A robot exists in the fleet
 * once it has connected.
 */
export interface RobotClient {
  readonly robotId: string;
  publishTelemetry(sample: Omit<TelemetrySample, 'sampledAt'>): Promise<void>;
  close(): Promise<void>;
}

export async function connectRobot(options: { stateDir: string; mqttPort: number; robotId: string }): Promise<RobotClient> {
  await issueCertificate(options.stateDir, options.robotId);
  const dir = join(options.stateDir, 'certs', options.robotId);
  const client: MqttClient = mqtt.connect(`mqtts://localhost:${options.mqttPort}`, {
    cert: await readFile(join(dir, 'certificate.pem.crt'), 'utf8'),
    key: await readFile(join(dir, 'private.pem.key'), 'utf8'),
    ca: await readFile(join(dir, 'ca.pem'), 'utf8'),
    clientId: options.robotId,
    protocolVersion: 4,
    keepalive: 30,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    rejectUnauthorized: true,
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return {
    robotId: options.robotId,
    async publishTelemetry(sample) {
      await client.publishAsync(topics.telemetry(options.robotId), JSON.stringify({ sampledAt: new Date().toISOString(), ...sample }), { qos: 1 });
    },
    close: () => client.endAsync(true).then(() => undefined, () => undefined),
  };
}

/** An ordinary Pi's vital signs, for a robot's row to have values. */
export const COOL_SAMPLE = {
  cpuPercent: 12,
  memoryPercent: 40,
  diskPercent: 50,
  cpuTemperatureC: 55,
  agentVersion: 'browser-test',
  lerobotVersion: '0.4.2',
} as const;
