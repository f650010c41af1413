import type { DeploymentChanged, LiveMessage, Role, RobotsUpdated, TelemetryRate } from '../../../schemas/index.js';

/** API Gateway closes a WebSocket connection after 2 hours; its records outlive it a little, then expire. */
export const CONNECTION_TTL_SECONDS = 2 * 3600 + 10 * 60;

/** A dashboard's WebSocket connection, as `$connect` admitted it. */
export interface NewConnection {
  readonly connectionId: string;
  readonly userId: string;
  readonly roles: readonly Role[];
  readonly connectedAt: Date;
}

/**
 * Who watches which robots. A subscription is to a robot id or to `*` (the whole fleet). Every method is idempotent:
 * API Gateway and Lambda may deliver the same request twice.
 */
export interface ConnectionStore {
  add(connection: NewConnection): Promise<void>;
  /**
   * Adds to the connection's subscriptions, unless that would take it over MAX_SUBSCRIPTIONS_PER_CONNECTION robot
   * ids (`*` does not count): then nothing is added. A store never lets a connection hold more, even when two
   * subscribes of one connection race. With `telemetry`, the connection's telemetry rate becomes that (for all its
   * subscriptions, whatever they were subscribed with); without, it keeps its rate (`raw` for a new connection).
   */
  subscribe(connectionId: string, subscriptions: readonly string[], telemetry?: TelemetryRate): Promise<SubscribeOutcome>;
  unsubscribe(connectionId: string, subscriptions: readonly string[]): Promise<void>;
  /**
   * Forgets the connection and all its subscriptions. `alsoSubscribedTo` names subscriptions the caller saw that the
   * connection record may not list (a subscribe racing the disconnect).
   */
  remove(connectionId: string, alsoSubscribedTo?: readonly string[]): Promise<void>;
  /** The live connections subscribed to exactly this key (a robot id, or `*`). */
  subscribersOf(subscription: string): Promise<string[]>;
  /** The same, each with its connection's telemetry rate. */
  watchersOf(subscription: string): Promise<Watcher[]>;
}

/** A connection subscribed to a key, and how it gets telemetry. */
export interface Watcher {
  readonly connectionId: string;
  readonly telemetry: TelemetryRate;
}

export type SubscribeOutcome =
  /** Subscribed; `telemetry` is the connection's rate from now on. */
  | { readonly status: 'subscribed'; readonly telemetry: TelemetryRate }
  /** The connection is not (or no longer) known. */
  | { readonly status: 'unknown-connection' }
  /** Refused: the connection holds `held` robot ids and this would add `adding` more. */
  | { readonly status: 'over-limit'; readonly held: number; readonly adding: number };

/**
 * What is pushed on a connection: a robot's message (one per domain event or raw sample), a coalesced round's part, or
 * a deployment's changed record (to `*` only).
 */
export type LivePush = LiveMessage | RobotsUpdated | DeploymentChanged;

/** Pushes messages to connections (API Gateway's management API in AWS). */
export interface LiveNotifier {
  /** `gone` when the connection no longer exists (HTTP 410); any other failure throws. */
  send(connectionId: string, message: LivePush): Promise<'sent' | 'gone'>;
}
