import type { EventView, RobotView } from '../../../schemas/index.js';
import type { LiveUpdate } from './messages.js';

/**
 * The fleet as the page holds it, and the pure rules for changing it. INVARIANTS:
 * - a robot's view never moves backwards: a view replaces the held one only if it is newer — a higher `lastSeq`, or
 *   the same `lastSeq` and telemetry sampled no earlier — and it differs in more than ages (`ageMs`); older views (a
 *   late RobotsUpdated, a list read that started before live updates) are ignored. A list read never removes a robot
 *   (robots are not deleted; one it does not have yet may have come live meanwhile);
 * - a RobotTelemetry merges its TelemetryView into the held view only if sampled no earlier than the held telemetry;
 *   for a robot not held yet it is ignored (no view to merge into: the list read brings it);
 * - `latestSeq` is the highest event number heard of per robot (events, telemetry messages, views); a robot whose
 *   view's `lastSeq` is below it is *behind* (the store re-reads the list if no newer view comes);
 * - applying a batch copies each map at most once and only if something in it changed (states are never mutated), and
 *   reports which robots' telemetry changed and each robot's domain events in arrival order.
 */

export interface FleetState {
  readonly robots: ReadonlyMap<string, RobotView>;
  /** When each robot's view last changed (the page's clock, performance.now()). */
  readonly updatedAt: ReadonlyMap<string, number>;
  readonly latestSeq: ReadonlyMap<string, number>;
}

export const EMPTY_FLEET: FleetState = { robots: new Map(), updatedAt: new Map(), latestSeq: new Map() };

export type FleetChange = LiveUpdate | { readonly kind: 'list'; readonly robots: readonly RobotView[] };

export interface BatchResult {
  readonly state: FleetState;
  /** Some view changed (robots and updatedAt are new maps). */
  readonly changed: boolean;
  /** Robots whose telemetry changed, with their new view. */
  readonly telemetry: ReadonlyMap<string, RobotView>;
  /** Each robot's domain events of the batch, in arrival order. */
  readonly events: ReadonlyMap<string, readonly EventView[]>;
  /** Robots this batch touched that are behind (their view's lastSeq below the newest event heard of). */
  readonly behind: readonly string[];
}

function sampledAtMs(view: RobotView): number {
  const sampledAt = view.telemetry?.sampledAt;
  return sampledAt === undefined ? Number.NEGATIVE_INFINITY : Date.parse(sampledAt);
}

/** The order of two views of one robot: > 0 when `a` is newer, < 0 when older, 0 when neither. */
export function compareViews(a: RobotView, b: RobotView): number {
  if (a.lastSeq !== b.lastSeq) return a.lastSeq - b.lastSeq;
  const at = sampledAtMs(a);
  const bt = sampledAtMs(b);
  if (at === bt) return 0;
  return at > bt ? 1 : -1;
}

const withoutAges = (key: string, value: unknown) => (key === 'ageMs' ? undefined : value);

/** Equal but for the ages (which grow with every answer and say nothing new). */
export function sameView(a: RobotView, b: RobotView): boolean {
  return JSON.stringify(a, withoutAges) === JSON.stringify(b, withoutAges);
}

export function telemetryChanged(before: RobotView | undefined, after: RobotView): boolean {
  if (before === undefined) return after.telemetry !== null;
  const a = before.telemetry;
  const b = after.telemetry;
  if (a === null || b === null) return a !== b;
  return a.sampledAt !== b.sampledAt || JSON.stringify(a, withoutAges) !== JSON.stringify(b, withoutAges);
}

export function applyBatch(state: FleetState, changes: readonly FleetChange[], now: number): BatchResult {
  let robots: Map<string, RobotView> | null = null;
  let updatedAt: Map<string, number> | null = null;
  let latestSeq: Map<string, number> | null = null;
  const telemetry = new Map<string, RobotView>();
  const events = new Map<string, EventView[]>();
  const touched = new Set<string>();

  const held = (robotId: string) => (robots ?? state.robots).get(robotId);
  const hear = (robotId: string, seq: number) => {
    touched.add(robotId);
    if (seq <= ((latestSeq ?? state.latestSeq).get(robotId) ?? 0)) return;
    latestSeq ??= new Map(state.latestSeq);
    latestSeq.set(robotId, seq);
  };
  const put = (view: RobotView, before: RobotView | undefined) => {
    robots ??= new Map(state.robots);
    updatedAt ??= new Map(state.updatedAt);
    robots.set(view.robotId, view);
    updatedAt.set(view.robotId, now);
    if (telemetryChanged(before, view)) telemetry.set(view.robotId, view);
    else if (telemetry.has(view.robotId)) telemetry.set(view.robotId, view);
  };
  const offer = (view: RobotView) => {
    hear(view.robotId, view.lastSeq);
    const before = held(view.robotId);
    if (before !== undefined) {
      const order = compareViews(view, before);
      if (order < 0 || (order === 0 && sameView(view, before))) return;
    }
    put(view, before);
  };

  for (const change of changes) {
    switch (change.kind) {
      case 'list':
      case 'robots':
        for (const view of change.robots) offer(view);
        break;
      case 'telemetry': {
        hear(change.robotId, change.seq);
        const before = held(change.robotId);
        if (before === undefined) break;
        if (before.telemetry !== null && Date.parse(change.telemetry.sampledAt) < Date.parse(before.telemetry.sampledAt)) break;
        const view: RobotView = { ...before, telemetry: change.telemetry };
        if (sameView(view, before)) break;
        put(view, before);
        break;
      }
      case 'event': {
        hear(change.robotId, change.event.seq);
        const list = events.get(change.robotId) ?? [];
        list.push(change.event);
        events.set(change.robotId, list);
        break;
      }
    }
  }

  const next: FleetState = {
    robots: robots ?? state.robots,
    updatedAt: updatedAt ?? state.updatedAt,
    latestSeq: latestSeq ?? state.latestSeq,
  };
  const behind = [...touched].filter((robotId) => isBehind(next, robotId));
  return { state: next, changed: robots !== null, telemetry, events, behind };
}

export function isBehind(state: FleetState, robotId: string): boolean {
  const latest = state.latestSeq.get(robotId);
  if (latest === undefined) return false;
  return latest > (state.robots.get(robotId)?.lastSeq ?? 0);
}

/** Every robot that is behind (checked before re-reading the list). */
export function robotsBehind(state: FleetState): string[] {
  return [...state.latestSeq.keys()].filter((robotId) => isBehind(state, robotId));
}
