import { topics } from '../schemas/topics.js';
import { parseJsonPayload } from './command-payload.js';
import type { Logger } from './adapters/json-log.js';
import type { Link } from './adapters/mqtt-link.js';

/**
 * Commands from the cloud to this robot: one subscription, `cmd/heartbeat/<thing>/+`, and a handler per request (the
 * topic's last level). The runtime registers `report-now` and `ack`; certificate rotation, the installer and whatever
 * comes next register their own with `handle`, without the runtime knowing them. (Topics that are not commands, such
 * as IoT Jobs' `$aws/things/<thing>/jobs/…`, are subscribed on the link by whoever needs them.)
 *
 * INVARIANTS
 * - A message never throws out of the router and never stops it: a request nobody handles, a payload that is not
 *   JSON, a handler that throws or whose promise rejects are each logged (warn) and the next message is handled.
 * - At most one handler per request: registering a second is a programming error and throws at once, so one part
 *   can never silently take over another's command.
 * - Handlers are called synchronously, in arrival order, and only between `start()` and `stop()`: a command that
 *   arrives after stop is dropped without a word (the cloud resends what matters; the agent is going away).
 * - Every promise a handler returns is tracked until it settles; `idle()` covers all of them, so stop can let a
 *   reply on its way out finish.
 */

/** What the router knows of a command besides its body. */
export interface CommandContext {
  readonly topic: string;
  /** The topic's last level: what the handler was registered for. */
  readonly request: string;
}

/** Gets the command's JSON body (`{}` for an empty payload); the body is unchecked, the handler parses it. */
export type CommandHandler = (body: unknown, command: CommandContext) => void | Promise<void>;

export class CommandRouter {
  /** `cmd/heartbeat/<thing>/+`: one level, so a reply topic (`…/<request>/reply`) never comes back in. */
  readonly filter: string;
  private readonly prefix: string;
  private readonly handlers = new Map<string, CommandHandler>();
  private readonly inFlight = new Set<Promise<void>>();
  private phase: 'new' | 'running' | 'stopped' = 'new';

  constructor(
    private readonly deps: {
      readonly link: Link;
      readonly thingName: string;
      readonly log: Logger;
    },
  ) {
    this.filter = topics.command(deps.thingName, '+');
    this.prefix = topics.command(deps.thingName, '');
  }

  /**
   * Routes `request` (the topic's last level) to `handler` from now on, before or after start. Returns the
   * function that stops it (idempotent; it removes this registration only, never a later one).
   */
  handle(request: string, handler: CommandHandler): () => void {
    if (request.length === 0 || /[/+#]/.test(request)) throw new Error(`not a command name: ${JSON.stringify(request)}`);
    if (this.handlers.has(request)) throw new Error(`the command ${request} already has a handler`);
    this.handlers.set(request, handler);
    return () => {
      if (this.handlers.get(request) === handler) this.handlers.delete(request);
    };
  }

  /** The requests handled now (for logs and tests). */
  requests(): string[] {
    return [...this.handlers.keys()];
  }

  /** Subscribes (at the next connection if the link is down) and starts dispatching. Once only. */
  start(): void {
    if (this.phase !== 'new') throw new Error(`the command router cannot start: it is ${this.phase}`);
    this.phase = 'running';
    this.deps.link.subscribe(this.filter, (topic, payload) => this.dispatch(topic, payload)).catch((error: unknown) => {
      this.deps.log.error('subscribing to commands failed', { filter: this.filter, error });
    });
  }

  /** Stops dispatching. The link has no unsubscribe: messages still delivered are dropped here. */
  stop(): void {
    this.phase = 'stopped';
  }

  /** Settles once every handler promise under way has (each one is bounded by whoever waits: stop's timeout). */
  idle(): Promise<unknown> {
    return Promise.all(this.inFlight);
  }

  private dispatch(topic: string, payload: Buffer): void {
    if (this.phase !== 'running') return;
    const { log } = this.deps;
    const request = topic.startsWith(this.prefix) ? topic.slice(this.prefix.length) : '';
    const handler = this.handlers.get(request);
    if (handler === undefined) {
      log.warn('unknown command ignored', { topic });
      return;
    }
    const body = parseJsonPayload(payload);
    if (!body.ok) {
      log.warn('malformed command ignored: payload is not JSON', { topic, bytes: payload.length });
      return;
    }
    let outcome: void | Promise<void>;
    try {
      outcome = handler(body.value, { topic, request });
    } catch (error) {
      log.warn('command handler failed', { topic, error });
      return;
    }
    if (!(outcome instanceof Promise)) return;
    const tracked: Promise<void> = outcome
      .catch((error: unknown) => log.warn('command handler failed', { topic, error }))
      .finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }
}
