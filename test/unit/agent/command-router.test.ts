import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger, LogFields } from '../../../agent/adapters/json-log.js';
import type { Link, LinkEvents, MessageHandler } from '../../../agent/adapters/mqtt-link.js';
import { CommandRouter } from '../../../agent/command-router.js';

/** agent/command-router.ts: one subscription, a handler per request, nothing a message does stops it. */

const THING = 'lekiwi-LK0001';
const FILTER = `cmd/heartbeat/${THING}/+`;
const command = (request: string) => `cmd/heartbeat/${THING}/${request}`;

/** Keeps what was subscribed; `deliver` hands a message to every subscription whose filter matches, as a broker would. */
class SubscriptionLink extends EventEmitter<LinkEvents> implements Link {
  isConnected = true;
  readonly handlers = new Map<string, MessageHandler>();
  subscribeFailure: Error | undefined;
  async start() {}
  async publish() {}
  async subscribe(filter: string, handler: MessageHandler) {
    if (this.subscribeFailure) throw this.subscribeFailure;
    this.handlers.set(filter, handler);
  }
  async stop() {}
  deliver(topic: string, payload: string) {
    for (const [filter, handler] of this.handlers) {
      const pattern = new RegExp(`^${filter.replace(/[$.]/g, '\\$&').replace('+', '[^/]+')}$`);
      if (pattern.test(topic)) handler(topic, Buffer.from(payload));
    }
  }
}

class RecordingLog implements Logger {
  readonly lines: { level: string; message: string; fields?: LogFields }[] = [];
  debug = (message: string, fields?: LogFields) => void this.lines.push({ level: 'debug', message, fields });
  info = (message: string, fields?: LogFields) => void this.lines.push({ level: 'info', message, fields });
  warn = (message: string, fields?: LogFields) => void this.lines.push({ level: 'warn', message, fields });
  error = (message: string, fields?: LogFields) => void this.lines.push({ level: 'error', message, fields });
  child = () => this;
  messages(level: string) {
    return this.lines.filter((line) => line.level === level).map((line) => line.message);
  }
}

let link: SubscriptionLink;
let log: RecordingLog;
let router: CommandRouter;

function newRouter(): CommandRouter {
  link = new SubscriptionLink();
  log = new RecordingLog();
  router = new CommandRouter({ link, thingName: THING, log });
  return router;
}

afterEach(() => router?.stop());

/** A promise and the functions that settle it, for a handler that is still busy. */
function deferred() {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('command router: routing', () => {
  it('subscribes to the one-level command filter on start, and not before', () => {
    newRouter();
    expect(router.filter).toBe(FILTER);
    expect([...link.handlers.keys()]).toEqual([]);
    router.start();
    expect([...link.handlers.keys()]).toEqual([FILTER]);
  });

  it('hands each command its JSON body and context, by the last topic level, synchronously and in order', () => {
    newRouter();
    const seen: [string, unknown, string][] = [];
    router.handle('report-now', (body, { request, topic }) => void seen.push([request, body, topic]));
    router.handle('ack', (body, { request, topic }) => void seen.push([request, body, topic]));
    router.start();
    link.deliver(command('ack'), '{"outbox":{"id":"o-1","through":3}}');
    link.deliver(command('report-now'), ' {"requestId":"r-1"} ');
    link.deliver(command('report-now'), ''); // an empty payload is an empty object
    expect(seen).toEqual([
      ['ack', { outbox: { id: 'o-1', through: 3 } }, command('ack')],
      ['report-now', { requestId: 'r-1' }, command('report-now')],
      ['report-now', {}, command('report-now')],
    ]);
    expect(log.messages('warn')).toEqual([]);
  });

  it('never sees a reply topic: the filter is one level', () => {
    newRouter();
    const seen: unknown[] = [];
    router.handle('report-now', (body) => void seen.push(body));
    router.start();
    link.deliver(`${command('report-now')}/reply`, '{"sentAt":"2026-11-22T08:00:00.000Z"}');
    expect(seen).toEqual([]);
  });

  it('routes handlers registered after start, and stops routing one once it is unregistered', () => {
    newRouter();
    router.start();
    const seen: unknown[] = [];
    const unregister = router.handle('install', (body) => void seen.push(body));
    link.deliver(command('install'), '{"n":1}');
    unregister();
    link.deliver(command('install'), '{"n":2}');
    expect(seen).toEqual([{ n: 1 }]);
    expect(log.messages('warn')).toEqual(['unknown command ignored']);
    expect(router.requests()).toEqual([]);
  });

  it('an old unregister does not remove a later handler of the same request', () => {
    newRouter();
    router.start();
    const seen: string[] = [];
    const first = router.handle('install', () => void seen.push('first'));
    first();
    router.handle('install', () => void seen.push('second'));
    first();
    link.deliver(command('install'), '{}');
    expect(seen).toEqual(['second']);
  });

  it('refuses a second handler for a request, and names that are not one topic level', () => {
    newRouter();
    router.handle('ack', () => undefined);
    expect(() => router.handle('ack', () => undefined)).toThrow(/ack already has a handler/);
    for (const bad of ['', 'a/b', '+', '#']) expect(() => router.handle(bad, () => undefined)).toThrow(/not a command name/);
    expect(router.requests()).toEqual(['ack']);
  });
});

describe('command router: a bad message never stops it', () => {
  it('logs unknown requests, inherited property names and payloads that are not JSON, and handles the next one', () => {
    newRouter();
    const seen: unknown[] = [];
    router.handle('report-now', (body) => void seen.push(body));
    router.start();
    link.deliver(command('self-destruct'), '{}');
    link.deliver(command('toString'), '{}');
    link.deliver(command('report-now'), '{"requestId": ');
    link.deliver(command('report-now'), '{"requestId":"after"}');
    expect(seen).toEqual([{ requestId: 'after' }]);
    expect(log.messages('warn')).toEqual([
      'unknown command ignored',
      'unknown command ignored',
      'malformed command ignored: payload is not JSON',
    ]);
    expect(log.lines[2]?.fields).toEqual({ topic: command('report-now'), bytes: '{"requestId": '.length });
  });

  it('logs a handler that throws and one whose promise rejects, and goes on', async () => {
    newRouter();
    const seen: string[] = [];
    router.handle('throws', () => {
      throw new Error('handler bug');
    });
    router.handle('rejects', async () => {
      throw new Error('async handler bug');
    });
    router.handle('works', () => void seen.push('works'));
    router.start();
    expect(() => link.deliver(command('throws'), '{}')).not.toThrow();
    link.deliver(command('rejects'), '{}');
    link.deliver(command('works'), '{}');
    await router.idle();
    expect(seen).toEqual(['works']);
    expect(log.lines.filter((line) => line.level === 'warn').map((line) => [line.message, line.fields?.topic, String(line.fields?.error)])).toEqual([
      ['command handler failed', command('throws'), 'Error: handler bug'],
      ['command handler failed', command('rejects'), 'Error: async handler bug'],
    ]);
  });

  it('logs a subscription that fails instead of throwing', async () => {
    newRouter();
    link.subscribeFailure = new Error('SUBACK refused');
    router.start();
    await new Promise((resolve) => setImmediate(resolve));
    expect(log.messages('error')).toEqual(['subscribing to commands failed']);
    expect(log.lines[0]?.fields?.filter).toBe(FILTER);
  });
});

describe('command router: lifecycle', () => {
  it('drops commands before start and after stop without calling handlers or logging', () => {
    newRouter();
    const seen: unknown[] = [];
    router.handle('ack', (body) => void seen.push(body));
    router.start();
    router.stop();
    link.deliver(command('ack'), '{}');
    link.deliver(command('unknown'), '{}');
    expect(seen).toEqual([]);
    expect(log.lines).toEqual([]);
    expect(() => router.start()).toThrow(/stopped/);
  });

  it('idle() waits for every handler promise still under way, and only those', async () => {
    newRouter();
    const replies = [deferred(), deferred()];
    let next = 0;
    router.handle('report-now', () => replies[next++]!.promise);
    router.start();
    link.deliver(command('report-now'), '{}');
    link.deliver(command('report-now'), '{}');
    let idle = false;
    const waiting = router.idle().then(() => {
      idle = true;
    });
    replies[0]!.resolve();
    await replies[0]!.promise;
    await Promise.resolve();
    expect(idle).toBe(false);
    replies[1]!.reject(new Error('reply failed'));
    await waiting;
    expect(idle).toBe(true);
    expect(log.messages('warn')).toEqual(['command handler failed']);
    // Settled promises are forgotten: a later idle() has nothing to wait for.
    await expect(router.idle()).resolves.toEqual([]);
  });
});
