import {
  createTeleoperationScorer,
  type TcpPeer,
  type TeleoperationObservation,
  type TeleoperationScorer,
  type TeleoperationTransition,
} from '../../../agent/core/teleoperation-scorer.js';
import type { TeleoperationConfig } from '../../../agent/core/teleoperation-config.js';

/**
 * A simulated robot, described as what happens when (bytes on the wire at moments, peers and processes over
 * intervals), read the way the agent's adapter reads Linux: one observation per tick, counters summed over the tick.
 */

export const HOST_PROCESS = 'lerobot.robots.lekiwi.lekiwi_host';
export const KEYBOARD_TELEOP = '4_xlerobot_teleop_keyboard.py';
export const OPERATOR = '192.168.1.20';
export const VIEWER = '192.168.1.30';
export const HEADSET = '192.168.1.40';

/** A LeKiwi action: 6 arm positions and 3 base velocities as JSON, plus its ZMTP frame header. */
export const ACTION_BYTES = 310;
/** ZMTP 3 greeting (64 bytes) + READY with Socket-Type PUSH (28 bytes), sent by each new PUSH connection. */
export const GREETING_BYTES = 92;
/** A JPEG frame plus its JSON header. */
export const FRAME_BYTES = 30_000;
export const HZ_30 = 1000 / 30;

export const operatorCommandPeer: TcpPeer = { localPort: 5555, remoteAddress: OPERATOR, remotePort: 51_000 };
export const operatorObservationPeer: TcpPeer = { localPort: 5556, remoteAddress: OPERATOR, remotePort: 51_001 };
export const viewerPeer: TcpPeer = { localPort: 5556, remoteAddress: VIEWER, remotePort: 52_000 };
export const headsetLinkPeer: TcpPeer = { localPort: 8442, remoteAddress: HEADSET, remotePort: 53_000 };
export const headsetPagePeer: TcpPeer = { localPort: 8443, remoteAddress: HEADSET, remotePort: 53_001 };

export interface Traffic {
  readonly at: number;
  readonly bytes: number;
  readonly kind: 'action' | 'greeting' | 'frame';
}

/** Present during [from, to); forever without `to`. */
export interface During<T> {
  readonly from: number;
  readonly to?: number;
  readonly value: T;
}

export interface World {
  readonly commandTraffic?: readonly Traffic[];
  readonly observationTraffic?: readonly Traffic[];
  readonly peers?: readonly During<TcpPeer>[];
  readonly processes?: readonly During<string>[];
}

export interface Ticks {
  readonly tickMs: number;
  readonly until: number;
  readonly from?: number;
  /** The adapter counts action messages itself instead of reporting bytes only. */
  readonly countsMessages?: boolean;
}

/** Messages sent every `periodMs` during [from, to). */
export function every(periodMs: number, from: number, to: number, bytes: number, kind: Traffic['kind']): Traffic[] {
  const traffic: Traffic[] = [];
  for (let index = 0; from + index * periodMs < to; index += 1) traffic.push({ at: from + index * periodMs, bytes, kind });
  return traffic;
}

export function actions(from: number, to: number, bytes = ACTION_BYTES): Traffic[] {
  return every(HZ_30, from, to, bytes, 'action');
}

export function frames(from: number, to: number): Traffic[] {
  return every(HZ_30, from, to, FRAME_BYTES, 'frame');
}

export function greeting(at: number): Traffic {
  return { at, bytes: GREETING_BYTES, kind: 'greeting' };
}

export function observationsOf(world: World, ticks: Ticks): TeleoperationObservation[] {
  const observations: TeleoperationObservation[] = [];
  for (let at = ticks.from ?? 0; at <= ticks.until; at += ticks.tickMs) {
    const inTick = (traffic: Traffic) => traffic.at > at - ticks.tickMs && traffic.at <= at;
    const present = <T>(during: During<T>) => during.from <= at && (during.to === undefined || at < during.to);
    const command = (world.commandTraffic ?? []).filter(inTick);
    observations.push({
      at,
      commandBytesIn: sum(command),
      ...(ticks.countsMessages ? { commandMessagesIn: command.filter((traffic) => traffic.kind === 'action').length } : {}),
      observationBytesOut: sum((world.observationTraffic ?? []).filter(inTick)),
      peers: (world.peers ?? []).filter(present).map((during) => during.value),
      processes: (world.processes ?? []).filter(present).map((during) => during.value),
    });
  }
  return observations;
}

/** Feeds the world to a fresh scorer; returns every transition and the scorer for a look at its final decision. */
export function run(
  world: World,
  ticks: Ticks,
  config: Partial<TeleoperationConfig> = {},
): { transitions: TeleoperationTransition[]; scorer: TeleoperationScorer } {
  const scorer = createTeleoperationScorer(config);
  const transitions = observationsOf(world, ticks).flatMap((observation) => scorer.observe(observation));
  return { transitions, scorer };
}

function sum(traffic: readonly Traffic[]): number {
  return traffic.reduce((total, item) => total + item.bytes, 0);
}
