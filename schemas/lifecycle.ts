import { z } from 'zod';

/**
 * IoT Core lifecycle (presence) events, as published on `$aws/events/presence/connected|disconnected/<clientId>`.
 * https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html
 */
export const DISCONNECT_REASONS = [
  'AUTH_ERROR',
  'CLIENT_INITIATED_DISCONNECT',
  'CLIENT_ERROR',
  'CONNECTION_LOST',
  'CUSTOMAUTH_TTL_EXPIRATION',
  'DUPLICATE_CLIENTID',
  'FORBIDDEN_ACCESS',
  'MQTT_KEEP_ALIVE_TIMEOUT',
  'SERVER_ERROR',
  'SERVER_INITIATED_DISCONNECT',
  'THROTTLED',
  'WEBSOCKET_TTL_EXPIRATION',
] as const;

/** The latest instant a JavaScript Date can hold; a timestamp beyond it cannot become an ISO date. */
const MAX_DATE_MS = 8_640_000_000_000_000;

const common = {
  clientId: z.string().min(1).max(128),
  /** Milliseconds since the epoch, IoT Core's clock. */
  timestamp: z.number().int().nonnegative().max(MAX_DATE_MS),
  sessionIdentifier: z.string().min(1).max(128),
  principalIdentifier: z.string().min(1).max(512),
  /** Per client id; a connect and its disconnect share it; resets after about an hour offline. */
  versionNumber: z.number().int().nonnegative(),
};

export const ConnectedLifecycleEvent = z.object({
  ...common,
  eventType: z.literal('connected'),
  ipAddress: z.string().min(1).max(64).optional(),
});

export const DisconnectedLifecycleEvent = z.object({
  ...common,
  eventType: z.literal('disconnected'),
  clientInitiatedDisconnect: z.boolean(),
  /** IoT Core adds reasons over time: keep any string, the known ones are listed in DISCONNECT_REASONS. */
  disconnectReason: z.string().min(1).max(64).optional(),
});

export const LifecycleEvent = z.discriminatedUnion('eventType', [ConnectedLifecycleEvent, DisconnectedLifecycleEvent]);
export type LifecycleEvent = z.infer<typeof LifecycleEvent>;
export type ConnectedLifecycleEvent = z.infer<typeof ConnectedLifecycleEvent>;
export type DisconnectedLifecycleEvent = z.infer<typeof DisconnectedLifecycleEvent>;
