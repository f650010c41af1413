import type { ClientMessage, DeploymentChanged, EventView, RobotView, TelemetryRate, TelemetryView } from '../../../schemas/index.js';

/**
 * What the WebSocket API sends, read by hand (zod stays out of the bundle) into the few shapes the store acts on:
 * - `RobotsUpdated { at, robots: RobotView[] }` (with a telemetry rate): the latest full view of each robot that changed;
 * - `RobotTelemetry` (without one): a LiveMessage whose `data` is the robot's whole latest TelemetryView;
 * - every other LiveMessage: a domain event, turned into an EventView for the timelines (the live feed does not carry
 *   `eventId` or `recordedAt`: it gets `eventId: ''` and `recordedAt = at`; the history API's record replaces it);
 * - `DeploymentChanged` (a deployment's record moved): handed to the deployment views, which re-read it;
 * - `Subscribed`, and `Error` replies to what the page sent.
 * Anything else (an ack of unsubscribe, a type this page does not know yet) is `ignored`.
 */

/** The telemetry rate the page asks for: coalesced RobotsUpdated at most once a second per robot. */
export const TELEMETRY_RATE: TelemetryRate = '1s';

export type LiveUpdate =
  | { readonly kind: 'robots'; readonly robots: readonly RobotView[] }
  | { readonly kind: 'telemetry'; readonly robotId: string; readonly seq: number; readonly telemetry: TelemetryView }
  | { readonly kind: 'event'; readonly robotId: string; readonly event: EventView };

export type ServerMessage =
  | LiveUpdate
  | { readonly kind: 'deployment'; readonly change: DeploymentChanged }
  | { readonly kind: 'subscribed' }
  | { readonly kind: 'error'; readonly code: string; readonly message: string }
  | { readonly kind: 'ignored'; readonly why: string };

/** The subscribe message: the whole fleet, with the coalesced telemetry rate unless the server refused it. */
export function subscribeMessage(withTelemetryRate: boolean): string {
  const message: ClientMessage = withTelemetryRate
    ? { action: 'subscribe', robotIds: ['*'], telemetry: TELEMETRY_RATE }
    : { action: 'subscribe', robotIds: ['*'] };
  return JSON.stringify(message);
}

export function readServerMessage(text: string): ServerMessage {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { kind: 'ignored', why: 'not JSON' };
  }
  if (!isRecord(json) || typeof json['type'] !== 'string') return { kind: 'ignored', why: 'no type' };
  const type = json['type'];
  switch (type) {
    case 'RobotsUpdated': {
      const robots = json['robots'];
      if (!Array.isArray(robots)) return { kind: 'ignored', why: 'RobotsUpdated without robots' };
      return { kind: 'robots', robots: robots.filter(isRobotView) };
    }
    case 'DeploymentChanged': {
      const { deploymentId, revision, state } = json;
      if (typeof deploymentId !== 'string' || typeof revision !== 'number' || !Number.isInteger(revision) || typeof state !== 'string') {
        return { kind: 'ignored', why: 'DeploymentChanged without deploymentId, revision or state' };
      }
      return { kind: 'deployment', change: json as unknown as DeploymentChanged };
    }
    case 'Subscribed':
      return { kind: 'subscribed' };
    case 'Unsubscribed':
      return { kind: 'ignored', why: 'Unsubscribed' };
    case 'Error': {
      const error = isRecord(json['error']) ? json['error'] : {};
      return {
        kind: 'error',
        code: typeof error['code'] === 'string' ? error['code'] : 'UNKNOWN',
        message: typeof error['message'] === 'string' ? error['message'] : 'no message',
      };
    }
    default:
      break;
  }
  const { robotId, seq, at, data } = json;
  if (typeof robotId !== 'string' || typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || typeof at !== 'string' || !isRecord(data)) {
    return { kind: 'ignored', why: `${type} without robotId, seq, at or data` };
  }
  if (type === 'RobotTelemetry') {
    if (typeof data['sampledAt'] !== 'string') return { kind: 'ignored', why: 'RobotTelemetry without sampledAt' };
    return { kind: 'telemetry', robotId, seq, telemetry: data as unknown as TelemetryView };
  }
  if (seq < 1) return { kind: 'ignored', why: `${type} with seq 0` };
  return { kind: 'event', robotId, event: { seq, eventId: '', type, version: 1, at, recordedAt: at, data } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRobotView(value: unknown): value is RobotView {
  return isRecord(value) && typeof value['robotId'] === 'string' && typeof value['lastSeq'] === 'number';
}
