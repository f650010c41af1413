import type { ConnectedLifecycleEvent, DisconnectedLifecycleEvent } from '../../schemas/index.js';

/** IoT Core lifecycle payloads as the presence rule delivers them. */
export function connectedEvent(
  clientId: string,
  versionNumber: number,
  timestamp: number,
  extra: Partial<ConnectedLifecycleEvent> = {},
): ConnectedLifecycleEvent {
  return {
    clientId,
    timestamp,
    eventType: 'connected',
    sessionIdentifier: `session-${clientId}-${versionNumber}-${timestamp}`,
    principalIdentifier: `cert-${clientId}`,
    versionNumber,
    ipAddress: '192.0.2.10',
    ...extra,
  };
}

export function disconnectedEvent(
  connect: ConnectedLifecycleEvent,
  timestamp: number,
  extra: Partial<DisconnectedLifecycleEvent> = {},
): DisconnectedLifecycleEvent {
  return {
    clientId: connect.clientId,
    timestamp,
    eventType: 'disconnected',
    sessionIdentifier: connect.sessionIdentifier,
    principalIdentifier: connect.principalIdentifier,
    versionNumber: connect.versionNumber,
    clientInitiatedDisconnect: true,
    disconnectReason: 'CLIENT_INITIATED_DISCONNECT',
    ...extra,
  };
}
