import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { silentLog } from '../../../agent/adapters/json-log.js';
import type { Link, LinkEvents, MessageHandler } from '../../../agent/adapters/mqtt-link.js';
import { createAgent, type Agent } from '../../../agent/agent.js';
import { telemetryPolicyConfig } from '../../../agent/core/telemetry-policy.js';

/** agent/agent.ts routes the commands it is given (`commands`: certificate rotation's) by the topic's last level. */

const THING = 'lekiwi-LK0001';

class CommandLink extends EventEmitter<LinkEvents> implements Link {
  isConnected = false;
  readonly handlers = new Map<string, MessageHandler>();
  async start() {}
  async publish() {}
  async subscribe(filter: string, handler: MessageHandler) {
    this.handlers.set(filter, handler);
  }
  async stop() {}
  deliver(topic: string, payload: string) {
    for (const handler of this.handlers.values()) handler(topic, Buffer.from(payload));
  }
}

let stateDir: string | undefined;
let agent: Agent | undefined;
afterEach(async () => {
  await agent?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

it('hands rotate-certificate, certificate-issued and certificate-rotated to their handlers as JSON, and nothing else', async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'agent-rotation-commands-'));
  const link = new CommandLink();
  const seen: [string, unknown][] = [];
  agent = createAgent({
    config: { thingName: THING, basicIngest: true, stateDir, telemetry: { sampleIntervalMs: 60_000, policy: telemetryPolicyConfig({}) } },
    link,
    telemetry: { read: async () => ({ sampledAt: new Date().toISOString() }) },
    log: silentLog,
    commands: {
      'rotate-certificate': (body) => seen.push(['rotate', body]),
      'certificate-issued': (body) => seen.push(['issued', body]),
      'certificate-rotated': () => {
        throw new Error('a handler bug');
      },
    },
  });
  await agent.start();
  link.deliver(`cmd/heartbeat/${THING}/rotate-certificate`, '{"requestId":"rotation-1"}');
  link.deliver(`cmd/heartbeat/${THING}/certificate-issued`, 'not json');
  link.deliver(`cmd/heartbeat/${THING}/certificate-rotated`, '{}'); // logged, the agent goes on
  link.deliver(`cmd/heartbeat/${THING}/toString`, '{}'); // not an own property: not a command
  link.deliver(`cmd/heartbeat/${THING}/certificate-issued`, '{"requestId":"rotation-1"}');
  expect(seen).toEqual([
    ['rotate', { requestId: 'rotation-1' }],
    ['issued', { requestId: 'rotation-1' }],
  ]);
});
