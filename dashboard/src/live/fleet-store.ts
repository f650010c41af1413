import type { DeploymentChanged, EventView, FleetMetrics, RobotView } from '../../../schemas/index.js';
import {
  STALE_AFTER_MS,
  type ApiClient,
  type FleetSnapshot,
  type FleetStore,
  type LinkState,
  type Timeline,
} from '../contracts.js';
import type { LiveEnvironment, LiveSocket } from './environment.js';
import { applyBatch, EMPTY_FLEET, robotsBehind, type FleetChange, type FleetState } from './fleet-state.js';
import { LiveTimeline } from './live-timeline.js';
import { readServerMessage, subscribeMessage } from './messages.js';
import { reconnectDelay } from './schedule.js';
import { ThrottledTask } from './throttled-task.js';

/**
 * The page's one live connection to the fleet and what it knows. INVARIANTS:
 * - one WebSocket at a time, opened with a fresh id token (`?token=`); it subscribes to `*` with the telemetry rate
 *   (coalesced RobotsUpdated) and, if the server refuses the rate (INVALID_REQUEST before the ack), without it
 *   (per-sample RobotTelemetry) for the rest of the page's life;
 * - dropped → reconnect after reconnectDelay (0.5 s … 10 s, jittered), the attempt count reset once subscribed;
 * - link: `connecting` until subscribed, `live` while subscribed, `connecting` again when it drops, and `stale` when
 *   it has not been live for STALE_AFTER_MS, measured by a timer (not noticed on the next message);
 * - after every subscription ack the list and the metrics are read again and every open timeline is filled, so what
 *   happened while not subscribed is never missing; the first list read waits for the ack (at most FIRST_LOAD_WAIT_MS);
 * - everything that changes the snapshot (messages, list and metrics reads, link changes) is queued and applied in
 *   ONE batch at the next animation frame (or FRAME_FALLBACK_MS, for hidden tabs that get no frames): one new snapshot
 *   with new maps, listeners notified once; event listeners (onEvents) get the batch's events once; nothing fetches
 *   per message;
 * - metrics are re-read at most every METRICS_INTERVAL_MS while messages arrive, and at once after a reconnect or refresh;
 * - a robot whose view stays behind its events for BEHIND_GRACE_MS (no RobotsUpdated came, or the server sends only
 *   RobotTelemetry) gets the list re-read, at most every LIST_INTERVAL_MS;
 * - a failed list or metrics read sets `error` (cleared by the next success) and is retried after LOAD_RETRY_MS.
 */

export const FIRST_LOAD_WAIT_MS = 1_000;
export const FRAME_FALLBACK_MS = 1_000;
export const METRICS_INTERVAL_MS = 5_000;
export const LIST_INTERVAL_MS = 5_000;
export const BEHIND_GRACE_MS = 2_000;
export const LOAD_RETRY_MS = 5_000;

export interface FleetStoreOptions {
  readonly api: ApiClient;
  readonly webSocketUrl: string;
  readonly idToken: () => Promise<string>;
  readonly env: LiveEnvironment;
}

type Queued =
  | FleetChange
  | { readonly kind: 'metrics'; readonly metrics: FleetMetrics }
  | { readonly kind: 'loaded' }
  | { readonly kind: 'error'; readonly source: 'list' | 'metrics'; readonly error: string | null }
  | { readonly kind: 'link'; readonly state: LinkState };

export function socketUrlOf(webSocketUrl: string, token: string): string {
  const url = new URL(webSocketUrl);
  url.searchParams.set('token', token);
  return url.toString();
}

export function createFleetStore(options: FleetStoreOptions): FleetStore & { start(): void } {
  return new LiveFleetStore(options);
}

class LiveFleetStore implements FleetStore {
  readonly #env: LiveEnvironment;
  #state: FleetState = EMPTY_FLEET;
  #snapshot: FleetSnapshot;
  readonly #listeners = new Set<() => void>();
  readonly #telemetryListeners = new Map<string, Set<(robot: RobotView) => void>>();
  readonly #eventListeners = new Set<(events: ReadonlyMap<string, readonly EventView[]>) => void>();
  readonly #deploymentListeners = new Set<(change: DeploymentChanged) => void>();
  readonly #timelines = new Set<LiveTimeline>();
  #queue: Queued[] = [];
  #cancelFrame: (() => void) | null = null;
  #cancelFallback: (() => void) | null = null;

  #socket: LiveSocket | null = null;
  #subscribed = false;
  #withTelemetryRate = true;
  #attempt = 0;
  #cancelReconnect: (() => void) | null = null;
  #cancelStale: (() => void) | null = null;
  #cancelFirstLoad: (() => void) | null = null;
  #cancelBehind: (() => void) | null = null;
  #cancelLoadRetry: (() => void) | null = null;
  #listReadStarted = false;
  readonly #errors: { list: string | null; metrics: string | null } = { list: null, metrics: null };
  #linkState: LinkState = 'connecting';
  readonly #listTask: ThrottledTask;
  readonly #metricsTask: ThrottledTask;
  #started = false;
  #closed = false;

  constructor(private readonly options: FleetStoreOptions) {
    this.#env = options.env;
    this.#snapshot = {
      robots: this.#state.robots,
      updatedAt: this.#state.updatedAt,
      metrics: null,
      link: { state: 'connecting', since: this.#env.now() },
      loaded: false,
      error: null,
    };
    this.#listTask = new ThrottledTask(() => this.#readList(), LIST_INTERVAL_MS, this.#env);
    this.#metricsTask = new ThrottledTask(() => this.#readMetrics(), METRICS_INTERVAL_MS, this.#env);
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#armStaleTimer();
    this.#cancelFirstLoad = this.#env.setTimer(() => {
      this.#cancelFirstLoad = null;
      if (!this.#listReadStarted) void this.refresh();
    }, FIRST_LOAD_WAIT_MS);
    void this.#connect();
  }

  getSnapshot = (): FleetSnapshot => this.#snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  timeline(robotId: string): Timeline {
    const timeline = new LiveTimeline(robotId, { api: this.options.api, setTimer: this.#env.setTimer }, (closed) =>
      this.#timelines.delete(closed),
    );
    if (this.#closed) timeline.close();
    else this.#timelines.add(timeline);
    return timeline;
  }

  onTelemetry(robotId: string, listener: (robot: RobotView) => void): () => void {
    const listeners = this.#telemetryListeners.get(robotId) ?? new Set();
    listeners.add(listener);
    this.#telemetryListeners.set(robotId, listeners);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#telemetryListeners.get(robotId) === listeners) this.#telemetryListeners.delete(robotId);
    };
  }

  onEvents(listener: (events: ReadonlyMap<string, readonly EventView[]>) => void): () => void {
    // Wrapped: the same function added twice is two listeners, each removed by its own stop.
    const entry = (events: ReadonlyMap<string, readonly EventView[]>) => listener(events);
    this.#eventListeners.add(entry);
    return () => this.#eventListeners.delete(entry);
  }

  onDeploymentChanges(listener: (change: DeploymentChanged) => void): () => void {
    const entry = (change: DeploymentChanged) => listener(change);
    this.#deploymentListeners.add(entry);
    return () => this.#deploymentListeners.delete(entry);
  }

  async refresh(): Promise<void> {
    this.#listReadStarted = true;
    await Promise.all([this.#listTask.runNow(), this.#metricsTask.runNow()]);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const cancel of [this.#cancelFrame, this.#cancelFallback, this.#cancelReconnect, this.#cancelStale, this.#cancelFirstLoad, this.#cancelBehind, this.#cancelLoadRetry]) {
      cancel?.();
    }
    this.#listTask.stop();
    this.#metricsTask.stop();
    const socket = this.#socket;
    this.#socket = null;
    socket?.close();
    for (const timeline of [...this.#timelines]) timeline.close();
    this.#listeners.clear();
    this.#telemetryListeners.clear();
    this.#eventListeners.clear();
    this.#deploymentListeners.clear();
  }

  // ---- the connection ----

  async #connect(): Promise<void> {
    this.#cancelReconnect = null;
    if (this.#closed) return;
    let token: string;
    try {
      token = await this.options.idToken();
    } catch {
      this.#scheduleReconnect();
      return;
    }
    if (this.#closed) return;
    let socket: LiveSocket;
    try {
      socket = this.#env.openSocket(socketUrlOf(this.options.webSocketUrl, token), {
        onOpen: () => {
          if (this.#socket === socket) socket.send(subscribeMessage(this.#withTelemetryRate));
        },
        onMessage: (text) => {
          if (this.#socket === socket) this.#onMessage(socket, text);
        },
        onClose: () => {
          if (this.#socket !== socket) return;
          this.#socket = null;
          this.#dropped();
        },
      });
    } catch {
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    this.#subscribed = false;
  }

  #onMessage(socket: LiveSocket, text: string): void {
    const message = readServerMessage(text);
    switch (message.kind) {
      case 'subscribed':
        if (!this.#subscribed) this.#onSubscribed();
        return;
      case 'error':
        if (!this.#subscribed && this.#withTelemetryRate && message.code === 'INVALID_REQUEST') {
          // A server without telemetry rates: per-sample RobotTelemetry it is.
          this.#withTelemetryRate = false;
          socket.send(subscribeMessage(false));
        }
        return;
      case 'ignored':
        return;
      case 'deployment':
        // Not part of the fleet's snapshot: handed over as it comes; the listeners throttle their own reads.
        for (const listener of [...this.#deploymentListeners]) listener(message.change);
        return;
      default:
        this.#enqueue(message);
        this.#metricsTask.request();
    }
  }

  #onSubscribed(): void {
    this.#subscribed = true;
    this.#attempt = 0;
    this.#cancelStale?.();
    this.#cancelStale = null;
    this.#setLink('live');
    void this.refresh();
    for (const timeline of this.#timelines) timeline.reconnected();
  }

  #dropped(): void {
    this.#subscribed = false;
    if (this.#linkState === 'live') {
      this.#setLink('connecting');
      this.#armStaleTimer();
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#cancelReconnect !== null) return;
    const delay = reconnectDelay(this.#attempt, this.#env.random());
    this.#attempt += 1;
    this.#cancelReconnect = this.#env.setTimer(() => void this.#connect(), delay);
  }

  #armStaleTimer(): void {
    this.#cancelStale?.();
    this.#cancelStale = this.#env.setTimer(() => {
      this.#cancelStale = null;
      if (this.#linkState !== 'live') this.#setLink('stale');
    }, STALE_AFTER_MS);
  }

  #setLink(state: LinkState): void {
    if (this.#linkState === state) return;
    this.#linkState = state;
    this.#enqueue({ kind: 'link', state });
  }

  // ---- reads ----

  async #readList(): Promise<void> {
    try {
      const robots = await this.options.api.listRobots();
      this.#enqueue({ kind: 'list', robots });
      this.#enqueue({ kind: 'loaded' });
      this.#enqueue({ kind: 'error', source: 'list', error: null });
    } catch (error) {
      this.#failed('list', `Could not read the robots: ${messageOf(error)}`);
    }
  }

  async #readMetrics(): Promise<void> {
    try {
      const metrics = await this.options.api.metrics();
      this.#enqueue({ kind: 'metrics', metrics });
      this.#enqueue({ kind: 'error', source: 'metrics', error: null });
    } catch (error) {
      this.#failed('metrics', `Could not read the fleet metrics: ${messageOf(error)}`);
    }
  }

  #failed(source: 'list' | 'metrics', error: string): void {
    if (this.#closed) return;
    this.#enqueue({ kind: 'error', source, error });
    if (this.#cancelLoadRetry !== null) return;
    this.#cancelLoadRetry = this.#env.setTimer(() => {
      this.#cancelLoadRetry = null;
      void this.refresh();
    }, LOAD_RETRY_MS);
  }

  // ---- the frame batch ----

  #enqueue(item: Queued): void {
    if (this.#closed) return;
    this.#queue.push(item);
    if (this.#cancelFrame !== null) return;
    this.#cancelFrame = this.#env.requestFrame(() => this.#flush());
    this.#cancelFallback = this.#env.setTimer(() => this.#flush(), FRAME_FALLBACK_MS);
  }

  #flush(): void {
    this.#cancelFrame?.();
    this.#cancelFallback?.();
    this.#cancelFrame = null;
    this.#cancelFallback = null;
    if (this.#closed) return;
    const queue = this.#queue;
    this.#queue = [];
    if (queue.length === 0) return;

    const now = this.#env.now();
    const changes: FleetChange[] = [];
    let { metrics, link, loaded, error } = this.#snapshot;
    for (const item of queue) {
      switch (item.kind) {
        case 'metrics':
          metrics = item.metrics;
          break;
        case 'link':
          link = { state: item.state, since: now };
          break;
        case 'loaded':
          loaded = true;
          break;
        case 'error':
          this.#errors[item.source] = item.error;
          error = this.#errors.list ?? this.#errors.metrics;
          break;
        default:
          changes.push(item);
      }
    }
    const result = applyBatch(this.#state, changes, now);
    this.#state = result.state;
    const before = this.#snapshot;
    if (result.changed || metrics !== before.metrics || link !== before.link || loaded !== before.loaded || error !== before.error) {
      this.#snapshot = { robots: result.state.robots, updatedAt: result.state.updatedAt, metrics, link, loaded, error };
      for (const listener of [...this.#listeners]) listener();
    }
    for (const [robotId, view] of result.telemetry) {
      for (const listener of [...(this.#telemetryListeners.get(robotId) ?? [])]) listener(view);
    }
    if (result.events.size > 0) {
      for (const timeline of this.#timelines) {
        const events = result.events.get(timeline.robotId);
        if (events) timeline.addLive(events);
      }
      for (const listener of [...this.#eventListeners]) listener(result.events);
    }
    if (result.behind.length > 0) this.#watchBehind();
  }

  /** Robots behind their events: if no newer view comes within the grace, the list is read again (throttled). */
  #watchBehind(): void {
    if (this.#cancelBehind !== null) return;
    this.#cancelBehind = this.#env.setTimer(() => {
      this.#cancelBehind = null;
      if (robotsBehind(this.#state).length > 0) this.#listTask.request();
    }, BEHIND_GRACE_MS);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
