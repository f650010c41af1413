/**
 * The seams between the dashboard's parts, written down before the parts: the data layer (auth/, api/, live/,
 * routing/) implements these; the views (views/) use only these. Types of the API come from schemas/ (type-only
 * imports, so zod stays out of the bundle).
 */
import type {
  CommandResult,
  CreateDeploymentRequest,
  DashboardConfig,
  DeploymentActionRequest,
  DeploymentChanged,
  DeploymentSummaryPage,
  DeploymentView,
  DiscoverResult,
  EventPage,
  EventView,
  FleetMetrics,
  Role,
  RobotView,
  TelemetryHistory,
} from '../../schemas/index.js';

export type { DashboardConfig };

// ---- Sign-in (auth/) ----

export interface SignedInUser {
  readonly username: string;
  readonly groups: readonly string[];
  /** The most powerful fleet role among the groups (admin > engineer > operator), or null for none. */
  readonly role: Role | null;
}

export interface AuthSession {
  readonly user: SignedInUser;
  /** A valid id token (refreshed with the refresh token when it is within a minute of expiry). Never stored. */
  idToken(): Promise<string>;
  /** Forgets the tokens and goes to the issuer's logout (which comes back to the sign-in). */
  signOut(): void;
}

/** What each role may do: the views show only the buttons the user may use (a 403 is still handled). */
export interface Permissions {
  readonly markFailed: boolean; // engineer, admin
  readonly recover: boolean; // engineer, admin
  readonly reportNow: boolean; // engineer, admin (POST /api/v2/discover)
  /** Create deployments and pause, resume, cancel or roll them back (POST /api/v2/deployments…). */
  readonly deploy: boolean; // engineer, admin
}

// ---- The HTTP API (api/) ----

/** A non-2xx answer of /api/v2, with the API's error code (schemas/api.ts ApiError) and message. */
export interface ApiFailure {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

export interface ApiClient {
  /** Every robot (all pages), optionally filtered as `GET /api/v2/robots` allows. */
  listRobots(signal?: AbortSignal): Promise<RobotView[]>;
  getRobot(robotId: string, signal?: AbortSignal): Promise<RobotView>;
  /** The robot's events newest first, a page at a time (the timeline's infinite scroll). */
  listEvents(robotId: string, options?: { cursor?: string; limit?: number; signal?: AbortSignal }): Promise<EventPage>;
  /** Every event with `seq > afterSeq`, oldest first, all pages (gap fill after a reconnect or a gap in seq). */
  eventsAfter(robotId: string, afterSeq: number, signal?: AbortSignal): Promise<EventView[]>;
  telemetry(robotId: string, window: { from: Date; to?: Date }, signal?: AbortSignal): Promise<TelemetryHistory>;
  metrics(signal?: AbortSignal): Promise<FleetMetrics>;
  markFailed(robotId: string, reason: string): Promise<CommandResult>;
  recover(robotId: string, note?: string): Promise<CommandResult>;
  /** "Report now" for the given robots (all online robots when omitted). */
  discover(robotIds?: readonly string[]): Promise<DiscoverResult>;
  /** One page of deployments, newest first (the list view pages with `nextCursor`). */
  listDeployments(options?: { cursor?: string; limit?: number; signal?: AbortSignal }): Promise<DeploymentSummaryPage>;
  getDeployment(deploymentId: string, signal?: AbortSignal): Promise<DeploymentView>;
  /** One user action: one Idempotency-Key. Answers the new deployment. */
  createDeployment(request: CreateDeploymentRequest): Promise<DeploymentView>;
  /** pause, resume, cancel or rollback; a transition the deployment's state does not allow is a 409. */
  deploymentAction(deploymentId: string, action: DeploymentAction, body?: DeploymentActionRequest): Promise<DeploymentView>;
}

export type DeploymentAction = 'pause' | 'resume' | 'cancel' | 'rollback';

// ---- The live feed (live/) ----

/**
 * `connecting` before the first open; `live` while the socket is open and subscribed; `stale` once it has been
 * down for STALE_AFTER_MS (the page greys live values out and says so).
 */
export type LinkState = 'connecting' | 'live' | 'stale';
export const STALE_AFTER_MS = 3_000;

export interface FleetSnapshot {
  /** Every robot's latest view, by id. Replaced (not mutated) when a frame applies updates. */
  readonly robots: ReadonlyMap<string, RobotView>;
  /** When each robot's view last changed on the page (performance.now()), for "updated" marks and the benchmark. */
  readonly updatedAt: ReadonlyMap<string, number>;
  readonly metrics: FleetMetrics | null;
  readonly link: { readonly state: LinkState; readonly since: number };
  /** The first full list has arrived. */
  readonly loaded: boolean;
  /** Why the last load failed, if it did (shown, and retried). */
  readonly error: string | null;
}

/** One robot's event timeline: every event once, in order, filled from the history API after gaps and reconnects. */
export interface TimelineSnapshot {
  /** Newest first. */
  readonly events: readonly EventView[];
  readonly hasOlder: boolean;
  readonly loadingOlder: boolean;
  readonly error: string | null;
}

export interface Timeline {
  getSnapshot(): TimelineSnapshot;
  subscribe(listener: () => void): () => void;
  loadOlder(): Promise<void>;
  close(): void;
}

export interface FleetStore {
  /** For React's useSyncExternalStore: one snapshot per animation frame at most, however many messages came. */
  getSnapshot(): FleetSnapshot;
  subscribe(listener: () => void): () => void;
  /** Opens (and keeps filled) the timeline of one robot while the detail view shows it. */
  timeline(robotId: string): Timeline;
  /** Live telemetry samples of one robot as they arrive (the detail view's charts), until the returned stop. */
  onTelemetry(robotId: string, listener: (robot: RobotView) => void): () => void;
  /**
   * The live feed's domain events, by robot, once per applied frame batch (never once per message), until the
   * returned stop. A deployment's page listens for its robots' RobotUpdate* events.
   */
  onEvents(listener: (events: ReadonlyMap<string, readonly EventView[]>) => void): () => void;
  /**
   * The live feed's DeploymentChanged messages (a deployment's record moved), each as it arrives, until the returned
   * stop. The deployments list and a deployment's page re-read on them (throttled by themselves).
   */
  onDeploymentChanges(listener: (change: DeploymentChanged) => void): () => void;
  /** Re-reads the list and the metrics now (after an action). */
  refresh(): Promise<void>;
  close(): void;
}

// ---- The URL (routing/) ----

export type SortDirection = 'asc' | 'desc';
export interface FleetFilters {
  readonly status?: 'online' | 'offline' | 'stale';
  readonly model?: string;
  readonly lifecycle?: string;
  /** Robots with an open alert of this severity (or any). */
  readonly alert?: 'warning' | 'critical' | 'any';
  /** Teleoperated now (`yes`) or not (`no`). */
  readonly teleop?: 'yes' | 'no';
  /** Free text: robot id, model, operator address, failure reason. */
  readonly q?: string;
}
export type Route =
  | { readonly view: 'fleet'; readonly filters: FleetFilters; readonly sort: { readonly column: string; readonly direction: SortDirection } | null; readonly selection: readonly string[] }
  | { readonly view: 'robot'; readonly robotId: string }
  | { readonly view: 'alerts' }
  | { readonly view: 'deployments' }
  | { readonly view: 'deployment'; readonly deploymentId: string };
