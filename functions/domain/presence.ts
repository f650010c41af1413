/**
 * Ordering of IoT Core lifecycle events for one client id.
 *
 * IoT Core delivers lifecycle events at least once and in no guaranteed order. Each carries a `versionNumber` that
 * grows with every connect of that client id; a disconnect carries the number of the connect it ends; the number
 * goes back to 0 once the client id has been offline for about an hour. So:
 * - within one "epoch" (events less than EPOCH_GAP_MS apart) the higher version is newer, and for the same version
 *   a disconnect is newer than its connect;
 * - events EPOCH_GAP_MS or more apart are ordered by IoT Core's timestamp, because a reset can only happen after a
 *   long silence, and within an epoch timestamps and versions agree anyway.
 * EPOCH_GAP_MS is half the reset period so that a reset a little earlier than "about an hour" is still seen.
 */
export const EPOCH_GAP_MS = 30 * 60_000;

export interface PresenceMark {
  readonly eventType: 'connected' | 'disconnected';
  readonly versionNumber: number;
  readonly sessionIdentifier: string;
  /** IoT Core's timestamp, ms since the epoch. */
  readonly timestamp: number;
}

export type PresenceOrder = 'newer' | 'stale' | 'duplicate';

export function orderPresence(incoming: PresenceMark, last: PresenceMark | null): PresenceOrder {
  if (last === null) return 'newer';
  if (
    incoming.eventType === last.eventType &&
    incoming.versionNumber === last.versionNumber &&
    incoming.sessionIdentifier === last.sessionIdentifier
  ) {
    return 'duplicate';
  }
  const gap = incoming.timestamp - last.timestamp;
  if (Math.abs(gap) >= EPOCH_GAP_MS) return gap > 0 ? 'newer' : 'stale';
  if (incoming.versionNumber !== last.versionNumber) {
    return incoming.versionNumber > last.versionNumber ? 'newer' : 'stale';
  }
  if (incoming.eventType !== last.eventType) {
    return incoming.eventType === 'disconnected' ? 'newer' : 'stale';
  }
  // Same version and kind but another session: only possible around a reset; the clock decides.
  return gap > 0 ? 'newer' : 'stale';
}
