import type { LiveMessage, Role } from '../../../schemas/index.js';

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
  /** Adds to the connection's subscriptions; false when the connection is not (or no longer) known. */
  subscribe(connectionId: string, subscriptions: readonly string[]): Promise<boolean>;
  unsubscribe(connectionId: string, subscriptions: readonly string[]): Promise<void>;
  /**
   * Forgets the connection and all its subscriptions. `alsoSubscribedTo` names subscriptions the caller saw that the
   * connection record may not list (a subscribe racing the disconnect).
   */
  remove(connectionId: string, alsoSubscribedTo?: readonly string[]): Promise<void>;
  /** The live connections subscribed to exactly this key (a robot id, or `*`). */
  subscribersOf(subscription: string): Promise<string[]>;
}

/** Pushes messages to connections (API Gateway's management API in AWS). */
export interface LiveNotifier {
  /** `gone` when the connection no longer exists (HTTP 410); any other failure throws. */
  send(connectionId: string, message: LiveMessage): Promise<'sent' | 'gone'>;
}
