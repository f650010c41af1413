import type { DeploymentChanged, DeploymentView, EventView } from '../../../schemas/index.js';
import type { ApiClient } from '../contracts.js';
import { ThrottledTask } from './throttled-task.js';

/**
 * One deployment kept current while its page is open. INVARIANTS:
 * - it is read at once on start, then again (a) when a DeploymentChanged of this deployment with a revision above
 *   every one seen arrives, or a RobotUpdate* event of one of its robots, at most once per EVENT_REFRESH_MS however
 *   many arrive (the reads go through one ThrottledTask: never two reads at once, no read per message), and (b)
 *   FALLBACK_MS after the last read, in case the feed is down or the messages did not reach this page;
 * - a DeploymentChanged is the record itself moving, so it is read even once final (a rollback recorded on an aborted
 *   deployment); RobotUpdate* events and the fallback are not;
 * - once the deployment is final (completed, aborted, canceled) neither (a) nor (b) reads it again; `refresh()` (after
 *   an action of the user's) always does, and a final deployment that an action moved (a rollback sets
 *   rollbackDeploymentId) is shown as read;
 * - a failed read keeps the last view and says why (`error`); the fallback retries it; a 404 stops the watch;
 * - listeners are notified after each read, with a new snapshot object.
 */

export const EVENT_REFRESH_MS = 1_000;
export const FALLBACK_MS = 5_000;

const FINAL = new Set(['completed', 'aborted', 'canceled']);

export interface DeploymentWatchSnapshot {
  readonly deployment: DeploymentView | null;
  readonly error: string | null;
  readonly notFound: boolean;
  /** How many reads answered (the page shows "loading" before the first). */
  readonly reads: number;
}

export interface WatchClock {
  now(): number;
  setTimer(callback: () => void, ms: number): () => void;
}

export interface DeploymentWatchOptions {
  readonly api: Pick<ApiClient, 'getDeployment'>;
  /** The fleet store's onEvents. */
  readonly onEvents: (listener: (events: ReadonlyMap<string, readonly EventView[]>) => void) => () => void;
  readonly clock: WatchClock;
  /** How a failure reads (describeFailure); 404s are recognised by `status`. */
  readonly describe: (error: unknown) => string;
  /** The fleet store's onDeploymentChanges (absent: events and the fallback only). */
  readonly onDeploymentChanges?: (listener: (change: DeploymentChanged) => void) => () => void;
}

export function isUpdateEvent(event: EventView): boolean {
  return event.type.startsWith('RobotUpdate');
}

export class DeploymentWatch {
  #snapshot: DeploymentWatchSnapshot = { deployment: null, error: null, notFound: false, reads: 0 };
  readonly #listeners = new Set<() => void>();
  readonly #task: ThrottledTask;
  #robotIds: ReadonlySet<string> = new Set();
  #stopEvents: (() => void) | null = null;
  #stopChanges: (() => void) | null = null;
  /** The highest DeploymentChanged revision seen: a repeat or an older one says nothing new. */
  #revision = 0;
  #cancelFallback: (() => void) | null = null;
  #closed = false;
  #abort: AbortController | null = null;

  constructor(
    readonly deploymentId: string,
    private readonly options: DeploymentWatchOptions,
  ) {
    this.#task = new ThrottledTask(() => this.#read(), EVENT_REFRESH_MS, options.clock);
  }

  start(): void {
    if (this.#closed || this.#stopEvents !== null) return;
    this.#stopEvents = this.options.onEvents((events) => this.#onEvents(events));
    this.#stopChanges = this.options.onDeploymentChanges?.((change) => this.#onChange(change)) ?? null;
    void this.#task.runNow();
  }

  getSnapshot = (): DeploymentWatchSnapshot => this.#snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** Reads it now (or right after the read in progress), final or not. */
  refresh(): Promise<void> {
    return this.#task.runNow();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#task.stop();
    this.#stopEvents?.();
    this.#stopEvents = null;
    this.#stopChanges?.();
    this.#stopChanges = null;
    this.#cancelFallback?.();
    this.#cancelFallback = null;
    this.#abort?.abort();
    this.#listeners.clear();
  }

  #watching(): boolean {
    const deployment = this.#snapshot.deployment;
    return !this.#closed && !this.#snapshot.notFound && (deployment === null || !FINAL.has(deployment.state));
  }

  #onEvents(events: ReadonlyMap<string, readonly EventView[]>): void {
    if (!this.#watching() || this.#snapshot.deployment === null) return;
    for (const [robotId, list] of events) {
      if (this.#robotIds.has(robotId) && list.some(isUpdateEvent)) {
        this.#task.request();
        return;
      }
    }
  }

  #onChange(change: DeploymentChanged): void {
    if (this.#closed || this.#snapshot.notFound || change.deploymentId !== this.deploymentId || change.revision <= this.#revision) return;
    this.#revision = change.revision;
    this.#task.request();
  }

  async #read(): Promise<void> {
    if (this.#closed) return;
    const controller = new AbortController();
    this.#abort = controller;
    let next: DeploymentWatchSnapshot;
    try {
      const deployment = await this.options.api.getDeployment(this.deploymentId, controller.signal);
      this.#robotIds = new Set(deployment.robots.map((robot) => robot.robotId));
      next = { deployment, error: null, notFound: false, reads: this.#snapshot.reads + 1 };
    } catch (error) {
      if (this.#closed) return;
      const status = typeof error === 'object' && error !== null ? (error as { status?: unknown }).status : undefined;
      next = { ...this.#snapshot, error: this.options.describe(error), notFound: status === 404, reads: this.#snapshot.reads + 1 };
    } finally {
      if (this.#abort === controller) this.#abort = null;
    }
    if (this.#closed) return;
    this.#snapshot = next;
    this.#armFallback();
    for (const listener of [...this.#listeners]) listener();
  }

  #armFallback(): void {
    this.#cancelFallback?.();
    this.#cancelFallback = null;
    if (!this.#watching()) return;
    this.#cancelFallback = this.options.clock.setTimer(() => {
      this.#cancelFallback = null;
      if (this.#watching()) this.#task.request();
    }, FALLBACK_MS);
  }
}

/** The deployments list re-reads its first page at most this often on the live feed's DeploymentChanged. */
export const LIST_CHANGE_REFRESH_MS = 1_000;

/**
 * Keeps the deployments list current from the live feed: every DeploymentChanged (any deployment: a new one appears,
 * a shown one moves) asks for `read`, run at most once per LIST_CHANGE_REFRESH_MS however many arrive, never two at
 * once (one ThrottledTask). The list's own timer stays as the fallback. Returns the stop.
 */
export function refreshListOnChanges(options: {
  readonly onDeploymentChanges: (listener: (change: DeploymentChanged) => void) => () => void;
  readonly read: () => Promise<void>;
  readonly clock: WatchClock;
}): () => void {
  const task = new ThrottledTask(options.read, LIST_CHANGE_REFRESH_MS, options.clock);
  const stop = options.onDeploymentChanges(() => task.request());
  return () => {
    stop();
    task.stop();
  };
}
