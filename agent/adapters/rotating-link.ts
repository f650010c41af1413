import { EventEmitter } from 'node:events';
import { describeError } from '../../lib/describe-error.js';
import type { Link, LinkEvents, MessageHandler, QoS } from './mqtt-link.js';

/**
 * The agent's link, able to move to another certificate without a gap (certificate rotation, issue 11 item 4). It is
 * a `Link` to the runtime (agent/agent.ts), delegating to the MQTT link of the credentials in use; `switchTo` opens a
 * second link with the new credentials under the SAME client id. The broker hands the client id over to the newcomer
 * only once it is admitted, so:
 *
 * INVARIANTS
 * - the runtime always has a connected link except for the hand-over itself: the new connection is made while the old
 *   one is still up, and the old one is stopped (its reconnect loop ended) only once the new one is connected;
 * - a new link that cannot connect within the timeout is stopped and the old one stays in use: a refused certificate
 *   is refused before the broker touches the old connection;
 * - every subscription is made on the new link before it is swapped in, so no command is missed;
 * - a publish that fails on the old link because of the hand-over (during it, or ended by it) is tried once more on
 *   the new one.
 */

export interface LinkCredentials {
  readonly certificateFile: string;
  readonly privateKeyFile: string;
}

/** Makes the MQTT link of a credential pair; `firstConnectionBudgetSeconds` bounds its first connection. */
export type LinkFactory = (credentials: LinkCredentials, options: { readonly firstConnectionBudgetSeconds?: number }) => Link;

export type SwitchOutcome = { readonly ok: true } | { readonly ok: false; readonly detail: string };

export class RotatingLink extends EventEmitter<LinkEvents> implements Link {
  private current: Link;
  private readonly handlers = new Map<string, MessageHandler>();
  private switching: Promise<SwitchOutcome> | undefined;
  private stopped = false;
  private readonly detachers = new Map<Link, () => void>();

  constructor(
    private readonly factory: LinkFactory,
    initial: LinkCredentials,
    private readonly log: { warn(message: string, details?: Record<string, unknown>): void; info(message: string, details?: Record<string, unknown>): void },
    options: { readonly firstConnectionBudgetSeconds?: number } = {},
  ) {
    super();
    this.current = factory(initial, options);
    this.attach(this.current);
  }

  get isConnected(): boolean {
    return this.current.isConnected;
  }

  start(): Promise<void> {
    return this.current.start();
  }

  async publish(topic: string, payload: string | Uint8Array, qos: QoS): Promise<void> {
    const link = this.current;
    try {
      await link.publish(topic, payload, qos);
    } catch (error) {
      // Cut short by the hand-over (the broker dropped the old connection, or stopping it ended the publish): once
      // on the link now in use. Not retried when the link is the same: that is an outage, the runtime's to handle.
      await this.switching;
      if (this.current === link) throw error;
      await this.current.publish(topic, payload, qos);
    }
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<void> {
    this.handlers.set(filter, handler);
    await this.current.subscribe(filter, handler);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.switching?.catch(() => undefined);
    await this.current.stop();
  }

  /**
   * Connects with `credentials` (same client id) within `timeoutMs`; once connected, it is the link in use and the
   * old one is stopped, and the runtime hears `resumed` (so its outbox sends again whatever the hand-over cut short).
   */
  switchTo(credentials: LinkCredentials, timeoutMs: number): Promise<SwitchOutcome> {
    if (this.stopped) return Promise.resolve({ ok: false, detail: 'the link is stopped' });
    if (this.switching) return Promise.resolve({ ok: false, detail: 'a switch is already under way' });
    const run = this.switchNow(credentials, timeoutMs).finally(() => {
      this.switching = undefined;
    });
    this.switching = run;
    return run;
  }

  private async switchNow(credentials: LinkCredentials, timeoutMs: number): Promise<SwitchOutcome> {
    const next = this.factory(credentials, { firstConnectionBudgetSeconds: Math.max(1, Math.ceil(timeoutMs / 1000)) });
    for (const [filter, handler] of this.handlers) await next.subscribe(filter, handler);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        next.start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (error) {
      await next.stop().catch(() => undefined);
      return { ok: false, detail: describeError(error) };
    } finally {
      clearTimeout(timer);
    }
    if (this.stopped) {
      await next.stop().catch(() => undefined);
      return { ok: false, detail: 'the link was stopped during the switch' };
    }
    const old = this.current;
    this.detachers.get(old)?.();
    this.current = next;
    this.attach(next);
    await old.stop().catch((error: unknown) => this.log.warn('stopping the previous link failed', { error }));
    this.log.info('link moved to the new certificate');
    this.emit('resumed', { sessionPresent: false });
    return { ok: true };
  }

  private attach(link: Link): void {
    const connected = (connection: { sessionPresent: boolean }) => this.emit('connected', connection);
    const resumed = (connection: { sessionPresent: boolean }) => this.emit('resumed', connection);
    // The old link is dropped by the broker when the new one takes the client id: not an outage of the robot.
    const interrupted = (error: Error) => {
      if (!this.switching) this.emit('interrupted', error);
    };
    link.on('connected', connected);
    link.on('resumed', resumed);
    link.on('interrupted', interrupted);
    this.detachers.set(link, () => {
      link.off('connected', connected);
      link.off('resumed', resumed);
      link.off('interrupted', interrupted);
      this.detachers.delete(link);
    });
  }
}
