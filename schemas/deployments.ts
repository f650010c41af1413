import { z } from 'zod';
import { Lifecycle, RobotId, RobotModel } from './robot-id.js';
import { APP } from './topics.js';

/**
 * Deployments (issue 12): software rollouts to the fleet through AWS IoT Jobs. One definition of every contract the
 * parts share — the release CLI and artifact store, the robot's installer and jobs client, the local IoT Jobs, the
 * deployment orchestrator, the HTTP API, the read models, the CDK stacks and the dashboard.
 *
 * The flow:
 *
 *   engineer ── POST /api/v2/deployments {release, targets, strategy} ──▶ cloud: targets resolved to a snapshot,
 *               undeployable robots held back (named reason), batches planned (canary, then rolling)
 *   cloud    ── one IoT Job per batch (job document = InstallJobDocument; rollout/abort/timeout/retry from strategy)
 *   robot    ◀── $aws/things/<thing>/jobs/notify-next; start-next (never while teleoperated: UpdateDeferred)
 *   robot    ── dt/heartbeat/<thing>/artifacts/request {requestId, objects: [sha256…]} ──▶ cloud (only what it lacks)
 *   cloud    ── cmd/heartbeat/<thing>/artifact-urls {requestId, urls: [{sha256, url}], expiresAt} ──▶ robot
 *   robot    fetches, verifies every hash, stages versions/<v>, switches `current` atomically, restarts, health check,
 *            reports UpdateStarted/UpdateSucceeded/UpdateFailed through its outbox (exactly once, in order) and the
 *            job execution's status through the Jobs MQTT API (so Jobs' abort criteria and timeouts work)
 *   IoT Jobs ── $aws/events/jobExecution/<jobId>/<event> ──▶ cloud: a job-side end the robot never reported
 *            (TIMED_OUT, REJECTED, REMOVED, CANCELED) becomes RobotUpdateFailed{source:'jobs'} in the robot's log
 *   cloud    the orchestrator consumes the robots' update events from the event log stream: records each robot's
 *            outcome in the deployment, opens the next batch when one is done (the canary gate), trips the abort
 *            threshold (cancels the open job, then starts a rollback deployment of every robot already updated)
 */

export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits (a SHA-256)');
export type Sha256 = z.infer<typeof Sha256>;

/** A release version: `1.4.0`, `2026.12.01-rc1`. Also a directory name on the robot (`versions/<version>`). */
export const ReleaseVersion = z
  .string()
  .regex(/^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$/, 'letters, digits and . _ + - only, starting with a letter or digit, at most 64')
  .refine((v) => v !== '.' && v !== '..' && !v.includes('..'), 'must not contain ..');
export type ReleaseVersion = z.infer<typeof ReleaseVersion>;

/** A path inside a release: relative, `/`-separated, no `.`/`..` segment, no empty segment. */
export const ReleasePath = z
  .string()
  .min(1)
  .max(1024)
  .refine((p) => !p.startsWith('/') && p.split('/').every((s) => s !== '' && s !== '.' && s !== '..'), {
    message: 'must be a relative path without empty, . or .. segments',
  })
  .refine((p) => !p.includes('\0') && !p.includes('\\'), 'must not contain NUL or backslash');

export const ReleaseFile = z
  .object({
    path: ReleasePath,
    sha256: Sha256,
    size: z.number().int().nonnegative(),
    /** Permission bits only (0o644, 0o755): what the robot sets on the staged file. */
    mode: z.number().int().min(0).max(0o777),
  })
  .strict();
export type ReleaseFile = z.infer<typeof ReleaseFile>;

/**
 * A content-addressed release: the files (sorted by path, each once) and their hashes. The manifest itself is stored
 * as an object under the SHA-256 of its canonical JSON (`canonicalManifestJson`), so a job document names it by hash
 * and the robot verifies it like any file.
 */
export const ReleaseManifest = z
  .object({
    format: z.literal(1),
    version: ReleaseVersion,
    /** The robot model it is for; absent: any model. */
    model: RobotModel.optional(),
    createdAt: z.iso.datetime({ offset: true }),
    files: z.array(ReleaseFile).max(100_000),
    totalBytes: z.number().int().nonnegative(),
  })
  .strict()
  .superRefine((m, ctx) => {
    for (let i = 1; i < m.files.length; i += 1) {
      if ((m.files[i - 1]?.path ?? '') >= (m.files[i]?.path ?? '')) {
        ctx.addIssue({ code: 'custom', path: ['files', i, 'path'], message: 'files must be sorted by path, each path once' });
        return;
      }
    }
    const total = m.files.reduce((sum, f) => sum + f.size, 0);
    if (total !== m.totalBytes) ctx.addIssue({ code: 'custom', path: ['totalBytes'], message: `must be the sum of the files' sizes (${total})` });
  });
export type ReleaseManifest = z.infer<typeof ReleaseManifest>;

/** The bytes a manifest is stored and hashed as: JSON with keys in a fixed order, no spaces. */
export function canonicalManifestJson(manifest: ReleaseManifest): string {
  const files = manifest.files.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size, mode: f.mode }));
  const head = { format: manifest.format, version: manifest.version, ...(manifest.model ? { model: manifest.model } : {}) };
  return JSON.stringify({ ...head, createdAt: manifest.createdAt, files, totalBytes: manifest.totalBytes });
}

/** What the artifact store keeps per release version (`releases/<version>.json`): the release's index entry. */
export const ReleaseSummary = z
  .object({
    version: ReleaseVersion,
    model: RobotModel.optional(),
    manifestSha256: Sha256,
    fileCount: z.number().int().nonnegative(),
    totalBytes: z.number().int().nonnegative(),
    createdAt: z.iso.datetime({ offset: true }),
  })
  .strict();
export type ReleaseSummary = z.infer<typeof ReleaseSummary>;

// ---------------------------------------------------------------------------------------------------------------
// Robot ⇄ cloud: download URLs for the objects a robot lacks (like rotation: a rule, a function, a reply command)
// ---------------------------------------------------------------------------------------------------------------

/**
 * Objects per URL request, so the reply fits in one IoT message (128 KB): an S3 presigned URL signed with a Lambda
 * role's session credentials is ~1.5–2 KB (the X-Amz-Security-Token alone ~1 KB), so 32 URLs stay near 64 KB.
 */
export const MAX_OBJECTS_PER_URL_REQUEST = 32;

export const artifactTopics = {
  request: (thing: string) => `dt/${APP}/${thing}/artifacts/request`,
} as const;

/** The reply's command name on `cmd/heartbeat/<thing>/<request>`. */
export const ARTIFACT_COMMANDS = { urls: 'artifact-urls' } as const;
export const ARTIFACT_COMMAND_TOPICS = [`cmd/${APP}/*/${ARTIFACT_COMMANDS.urls}`] as const;

/** The rule that hands a robot's URL requests to the `artifact-urls` function (topic(3) = the publisher's thing). */
export const ARTIFACT_RULE = {
  name: 'heartbeat_artifact_urls',
  topicFilter: `dt/${APP}/+/artifacts/request`,
  sql: `SELECT *, topic(3) AS thingName, topic() AS topic FROM 'dt/${APP}/+/artifacts/request'`,
  partitionKey: 'artifacts-${topic(3)}',
  description: 'Robots asking for short-lived download URLs of release objects, to the artifact-urls function',
} as const;

const requestId = z.string().min(8).max(128).regex(/^[A-Za-z0-9:_.-]+$/, 'letters, digits and : _ . - only');

export const ArtifactUrlRequest = z
  .object({ requestId, objects: z.array(Sha256).min(1).max(MAX_OBJECTS_PER_URL_REQUEST) })
  .strict();
export type ArtifactUrlRequest = z.infer<typeof ArtifactUrlRequest>;

export const ArtifactUrlReply = z.union([
  z
    .object({
      requestId,
      urls: z.array(z.object({ sha256: Sha256, url: z.url(), size: z.number().int().nonnegative() }).strict()),
      /** Objects the store does not have (the robot reports FETCH_FAILED naming one). */
      missing: z.array(Sha256),
      expiresAt: z.iso.datetime({ offset: true }),
    })
    .strict(),
  z.object({ requestId, rejected: z.object({ reason: z.string().max(64), message: z.string().max(500) }).strict() }).strict(),
]);
export type ArtifactUrlReply = z.infer<typeof ArtifactUrlReply>;

// ---------------------------------------------------------------------------------------------------------------
// IoT Jobs: the device side of the Jobs MQTT API (AWS's topics) and our job document
// ---------------------------------------------------------------------------------------------------------------

/** AWS IoT Jobs' reserved topics for one thing (Jobs device MQTT API). */
export const jobsTopics = {
  notify: (thing: string) => `$aws/things/${thing}/jobs/notify`,
  notifyNext: (thing: string) => `$aws/things/${thing}/jobs/notify-next`,
  get: (thing: string) => `$aws/things/${thing}/jobs/get`,
  startNext: (thing: string) => `$aws/things/${thing}/jobs/start-next`,
  describe: (thing: string, jobId: string) => `$aws/things/${thing}/jobs/${jobId}/get`,
  update: (thing: string, jobId: string) => `$aws/things/${thing}/jobs/${jobId}/update`,
  accepted: (request: string) => `${request}/accepted`,
  rejected: (request: string) => `${request}/rejected`,
} as const;

/** IoT's job event topics (`$aws/events/jobExecution/<jobId>/<event>`), read by the job-events rule. */
export const JOB_EXECUTION_EVENTS_FILTER = '$aws/events/jobExecution/+/+';

/** The rule that hands IoT's job execution events to the `job-events` function. */
export const JOB_EVENTS_RULE = {
  name: 'heartbeat_job_events',
  topicFilter: JOB_EXECUTION_EVENTS_FILTER,
  sql: `SELECT *, topic(4) AS jobId, topic(5) AS operation, topic() AS topic FROM '${JOB_EXECUTION_EVENTS_FILTER}'`,
  partitionKey: 'jobs-${topic(4)}',
  description: "IoT Jobs' job execution events (a robot's update ending on the Jobs side) to the job-events function",
} as const;

/** A deployment's id: `dep-` + 26 Crockford base32 characters (a ULID: sorts by creation time). */
export const DeploymentId = z.string().regex(/^dep-[0-9A-HJKMNP-TV-Z]{26}$/, 'must be dep- followed by a ULID');
export type DeploymentId = z.infer<typeof DeploymentId>;

/** The IoT job of a deployment's batch: `<deploymentId>-b<batch>` (≤ 64, Jobs' id alphabet). */
export function batchJobId(deploymentId: string, batch: number): string {
  return `${deploymentId}-b${batch}`;
}
/** The deployment and batch of a job id made by batchJobId; undefined for any other job. */
export function parseBatchJobId(jobId: string): { readonly deploymentId: string; readonly batch: number } | undefined {
  const match = /^(dep-[0-9A-HJKMNP-TV-Z]{26})-b(\d{1,5})$/.exec(jobId);
  return match ? { deploymentId: match[1] ?? '', batch: Number(match[2]) } : undefined;
}

export const DeploymentKind = z.enum(['deploy', 'rollback']);
export type DeploymentKind = z.infer<typeof DeploymentKind>;

/** The job document of every batch job: what to install and how. */
export const InstallJobDocument = z
  .object({
    operation: z.literal('heartbeat.install'),
    deploymentId: DeploymentId,
    kind: DeploymentKind,
    release: z.object({ version: ReleaseVersion, manifestSha256: Sha256, fileCount: z.number().int().nonnegative(), totalBytes: z.number().int().nonnegative() }).strict(),
    policy: z
      .object({
        /** How long the health check may take after the switch before the robot switches back. */
        healthCheckTimeoutSeconds: z.number().int().min(5).max(3_600),
        /** The Jobs step timeout the robot sets on start-next (its own progress deadline). */
        stepTimeoutMinutes: z.number().int().min(1).max(10_080),
      })
      .strict(),
  })
  .strict();
export type InstallJobDocument = z.infer<typeof InstallJobDocument>;

// ---------------------------------------------------------------------------------------------------------------
// The robot's facts about an update (agent events through the outbox, then domain events in the robot's log)
// ---------------------------------------------------------------------------------------------------------------

/** Why an install did not happen or did not hold. */
export const INSTALL_FAILURE_REASONS = [
  /** The robot's own failures (reported by the agent). */
  'MODEL_MISMATCH',
  'FETCH_FAILED',
  'HASH_MISMATCH',
  'DISK_FULL',
  'STAGE_FAILED',
  'SWITCH_FAILED',
  'RESTART_FAILED',
  'HEALTH_CHECK_FAILED',
  /** The agent found an install interrupted (power loss, SIGKILL) where it could not resume, and went back. */
  'INTERRUPTED',
  /** A fault injected on purpose (tests, benchmarks, game days: agent.json `install.injectFailure`). */
  'INJECTED',
  /** Ends on the Jobs side the robot never reported (the job-events function records them). */
  'TIMED_OUT',
  'REJECTED',
  'REMOVED',
  'CANCELED',
] as const;
export const InstallFailureReason = z.enum(INSTALL_FAILURE_REASONS);
export type InstallFailureReason = z.infer<typeof InstallFailureReason>;

/** The install steps the agent persists (agent/core/install-plan.ts); power loss resumes or rolls back from each. */
export const INSTALL_STEPS = ['fetching', 'staged', 'switched', 'restarted', 'verified'] as const;
export const InstallStep = z.enum(INSTALL_STEPS);
export type InstallStep = z.infer<typeof InstallStep>;

const updateRef = {
  deploymentId: DeploymentId,
  jobId: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/),
  version: ReleaseVersion,
};
const fromVersion = ReleaseVersion.nullable();

/** The robot put the update off (it is being driven); it starts by itself when the reason ends. */
export const UpdateDeferredData = z.object({ ...updateRef, reason: z.enum(['teleoperation']) }).strict();
export const UpdateStartedData = z
  .object({
    ...updateRef,
    kind: DeploymentKind,
    fromVersion,
    /** What the robot must download (only objects it does not already have). */
    filesToFetch: z.number().int().nonnegative(),
    bytesToFetch: z.number().int().nonnegative(),
  })
  .strict();
export const UpdateSucceededData = z
  .object({
    ...updateRef,
    kind: DeploymentKind,
    fromVersion,
    filesFetched: z.number().int().nonnegative(),
    bytesFetched: z.number().int().nonnegative(),
    durationMs: z.number().int().nonnegative(),
  })
  .strict();
export const UpdateFailedData = z
  .object({
    ...updateRef,
    kind: DeploymentKind,
    reason: InstallFailureReason,
    detail: z.string().max(500).optional(),
    step: InstallStep.optional(),
    /** The version the robot is on after the failure (it switched back, or never switched). */
    runningVersion: fromVersion,
    /** 'robot': the agent said so; 'jobs': IoT Jobs ended the execution (timeout, cancel…) without the robot's word. */
    source: z.enum(['robot', 'jobs']),
  })
  .strict();
/** The software version the robot runs, stated on every (re)connection; recorded only when it changes. */
export const SoftwareStateData = z.object({ version: fromVersion }).strict();

export type UpdateDeferredData = z.infer<typeof UpdateDeferredData>;
export type UpdateStartedData = z.infer<typeof UpdateStartedData>;
export type UpdateSucceededData = z.infer<typeof UpdateSucceededData>;
export type UpdateFailedData = z.infer<typeof UpdateFailedData>;
export type SoftwareStateData = z.infer<typeof SoftwareStateData>;

/** The orchestrator queued the robot in a batch job (written to the robot's log by the cloud). */
export const UpdateQueuedData = z
  .object({
    ...updateRef,
    kind: DeploymentKind,
    batch: z.number().int().nonnegative(),
    /** For a rollback: the deployment it undoes (the robot's RobotUpdateRolledBack names it). */
    parentDeploymentId: DeploymentId.nullable().optional(),
  })
  .strict();
export type UpdateQueuedData = z.infer<typeof UpdateQueuedData>;

// ---------------------------------------------------------------------------------------------------------------
// The deployment API (routes in schemas/routes.ts)
// ---------------------------------------------------------------------------------------------------------------

export const DeploymentStrategy = z
  .object({
    /** Robots in the canary batch; 0 skips the canary. */
    canary: z.number().int().min(0).max(1_000).default(1),
    /** Rolling batches after the canary: a fixed size … */
    batchSize: z.number().int().min(1).max(1_000).default(5),
    /** … or, when set, sizes growing by this factor from batchSize (5, 10, 20 … with 2). */
    batchGrowthFactor: z.number().min(1.1).max(5).optional(),
    /** Abort when failures reach this % of the robots finished so far … */
    abortThresholdPercent: z.number().min(0).max(100).default(20),
    /** … once at least this many have finished. */
    abortMinRobots: z.number().int().min(1).max(10_000).default(5),
    /** Jobs' in-progress timeout per robot. */
    robotTimeoutMinutes: z.number().int().min(1).max(10_080).default(30),
    /** Jobs' retries of a robot's failed or timed-out install. */
    retries: z.number().int().min(0).max(10).default(0),
    healthCheckTimeoutSeconds: z.number().int().min(5).max(3_600).default(60),
  })
  .strict();
export type DeploymentStrategy = z.infer<typeof DeploymentStrategy>;

export const DeploymentTargets = z.union([
  z.object({ robotIds: z.array(RobotId).min(1).max(10_000) }).strict(),
  z
    .object({ filter: z.object({ model: RobotModel.optional(), lifecycle: Lifecycle.optional() }).strict() })
    .strict(),
]);
export type DeploymentTargets = z.infer<typeof DeploymentTargets>;

export const CreateDeploymentRequest = z
  .object({
    release: ReleaseVersion,
    targets: DeploymentTargets,
    strategy: DeploymentStrategy.partial().optional(),
    note: z.string().max(500).optional(),
  })
  .strict();
export type CreateDeploymentRequest = z.infer<typeof CreateDeploymentRequest>;

/** Why a targeted robot was held back (not forced). */
export const HOLD_REASONS = ['teleoperated', 'failed', 'offline', 'deploying', 'unknown', 'model-mismatch', 'provisioning'] as const;
export const HoldReason = z.enum(HOLD_REASONS);
export type HoldReason = z.infer<typeof HoldReason>;

export const DEPLOYMENT_STATES = ['running', 'paused', 'completed', 'aborted', 'canceled'] as const;
export const DeploymentState = z.enum(DEPLOYMENT_STATES);
export type DeploymentState = z.infer<typeof DeploymentState>;

export const ROBOT_UPDATE_STATES = ['held', 'pending', 'queued', 'deferred', 'installing', 'succeeded', 'failed', 'rolled-back', 'canceled'] as const;
export const RobotUpdateState = z.enum(ROBOT_UPDATE_STATES);
export type RobotUpdateState = z.infer<typeof RobotUpdateState>;

export const DeploymentRobotView = z.object({
  robotId: RobotId,
  /** Null for a held robot. */
  batch: z.number().int().nonnegative().nullable(),
  state: RobotUpdateState,
  /** A hold reason, or an install failure reason. */
  reason: z.string().nullable(),
  fromVersion: z.string().nullable(),
  queuedAt: z.string().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});
export type DeploymentRobotView = z.infer<typeof DeploymentRobotView>;

export const DeploymentBatchView = z.object({
  index: z.number().int().nonnegative(),
  kind: z.enum(['canary', 'rolling']),
  jobId: z.string().nullable(),
  state: z.enum(['pending', 'running', 'done', 'canceled']),
  robots: z.number().int().nonnegative(),
  succeeded: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
});
export type DeploymentBatchView = z.infer<typeof DeploymentBatchView>;

/** The rollbacks of a deployment as GET /api/v2/deployments/{id} shows them (DeploymentView.rollback). */
export const DeploymentRollbackView = z.object({
  requested: z.boolean(),
  deployments: z.array(z.object({ deploymentId: DeploymentId, toVersion: ReleaseVersion, robots: z.number().int().positive() })),
  /** Succeeded robots that could not be rolled back, and why. */
  skipped: z.number().int().nonnegative(),
  skippedReason: z.string().nullable(),
});
export type DeploymentRollbackView = z.infer<typeof DeploymentRollbackView>;

export const DeploymentView = z.object({
  deploymentId: DeploymentId,
  kind: DeploymentKind,
  /** For a rollback: the deployment it undoes. */
  parentDeploymentId: DeploymentId.nullable(),
  /** For a deployment that was rolled back: its rollback. */
  rollbackDeploymentId: DeploymentId.nullable(),
  release: z.object({ version: ReleaseVersion, manifestSha256: Sha256 }),
  state: DeploymentState,
  /** Why it aborted or was canceled (e.g. "3 of 8 finished robots failed (37.5 % ≥ 20 %)"). */
  reason: z.string().nullable(),
  strategy: DeploymentStrategy,
  targets: DeploymentTargets,
  note: z.string().nullable(),
  createdBy: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  counts: z.object({
    targeted: z.number().int().nonnegative(),
    held: z.number().int().nonnegative(),
    pending: z.number().int().nonnegative(),
    inProgress: z.number().int().nonnegative(),
    succeeded: z.number().int().nonnegative(),
    failed: z.number().int().nonnegative(),
    rolledBack: z.number().int().nonnegative(),
    canceled: z.number().int().nonnegative(),
  }),
  batches: z.array(DeploymentBatchView),
  robots: z.array(DeploymentRobotView),
  /** Its rollback deployments (one per version the robots came from), and the robots that could not be rolled back. */
  rollback: DeploymentRollbackView.optional(),
});
export type DeploymentView = z.infer<typeof DeploymentView>;

/** GET /api/v2/deployments: newest first, without the per-robot list. */
export const DeploymentSummary = DeploymentView.omit({ robots: true });
export type DeploymentSummary = z.infer<typeof DeploymentSummary>;
export const DeploymentSummaryPage = z.object({ items: z.array(DeploymentSummary), nextCursor: z.string().nullable() });
export type DeploymentSummaryPage = z.infer<typeof DeploymentSummaryPage>;

/** The body of POST …/{id}/pause, resume, cancel, rollback (all optional). */
export const DeploymentActionRequest = z.object({ reason: z.string().min(1).max(500).optional() }).strict();
export type DeploymentActionRequest = z.infer<typeof DeploymentActionRequest>;

/** The software a robot runs, and the update it is in, as the fleet view shows it (RobotView.software). */
export const RobotSoftwareView = z.object({
  version: z.string().nullable(),
  update: z
    .object({
      deploymentId: z.string(),
      version: z.string(),
      state: z.enum(['queued', 'deferred', 'installing']),
      since: z.string(),
    })
    .nullable(),
});
export type RobotSoftwareView = z.infer<typeof RobotSoftwareView>;

// ---------------------------------------------------------------------------------------------------------------
// The deployment's own record (functions/domain/deployment.ts decides, functions/adapters/dynamo-deployments.ts keeps)
// ---------------------------------------------------------------------------------------------------------------

/** How a robot's part in a deployment ended, once: installed, failed, canceled before it started (job canceled). */
export const ROBOT_OUTCOMES = ['succeeded', 'failed', 'canceled'] as const;
export const RobotOutcome = z.enum(ROBOT_OUTCOMES);
export type RobotOutcome = z.infer<typeof RobotOutcome>;

const ReleaseRef = z
  .object({ version: ReleaseVersion, manifestSha256: Sha256, fileCount: z.number().int().nonnegative(), totalBytes: z.number().int().nonnegative(), model: RobotModel.optional() })
  .strict();

const recordEvent = <T extends string, D extends z.ZodType>(type: T, data: D) =>
  z
    .object({ deploymentId: DeploymentId, seq: z.number().int().positive(), at: z.iso.datetime({ offset: true }), type: z.literal(type), data })
    .strict();

/** Every fact of a deployment's record, numbered per deployment (`seq` ≥ 1), newest last. */
export const DeploymentRecordEvent = z.discriminatedUnion('type', [
  recordEvent(
    'DeploymentStarted',
    z
      .object({
        kind: DeploymentKind,
        parentDeploymentId: DeploymentId.nullable(),
        release: ReleaseRef,
        strategy: DeploymentStrategy,
        targets: DeploymentTargets,
        note: z.string().nullable(),
        createdBy: z.string(),
        /** Robots per batch, in order. */
        batches: z.array(z.number().int().positive()),
        targeted: z.number().int().nonnegative(),
        held: z.number().int().nonnegative(),
        canary: z.boolean(),
      })
      .strict(),
  ),
  recordEvent('DeploymentBatchStarted', z.object({ batch: z.number().int().nonnegative(), jobId: z.string(), robots: z.number().int().positive() }).strict()),
  recordEvent(
    'DeploymentRobotOutcome',
    z.object({ robotId: RobotId, batch: z.number().int().nonnegative(), outcome: RobotOutcome, reason: z.string().nullable(), fromVersion: ReleaseVersion.nullable() }).strict(),
  ),
  recordEvent(
    'DeploymentBatchCompleted',
    z.object({ batch: z.number().int().nonnegative(), succeeded: z.number().int().nonnegative(), failed: z.number().int().nonnegative(), canceled: z.number().int().nonnegative() }).strict(),
  ),
  recordEvent('DeploymentPaused', z.object({ by: z.string(), reason: z.string().nullable() }).strict()),
  recordEvent('DeploymentResumed', z.object({ by: z.string(), reason: z.string().nullable() }).strict()),
  /** The failure threshold tripped: the open job is canceled, no batch opens, every updated robot is rolled back. */
  recordEvent('DeploymentAborted', z.object({ reason: z.string(), failed: z.number().int().nonnegative(), finished: z.number().int().nonnegative() }).strict()),
  recordEvent('DeploymentCanceled', z.object({ by: z.string(), reason: z.string().nullable() }).strict()),
  recordEvent('DeploymentCompleted', z.object({ succeeded: z.number().int().nonnegative(), failed: z.number().int().nonnegative() }).strict()),
  /** An engineer asked to roll back a finished deployment (an abort asks by itself). */
  recordEvent('DeploymentRollbackRequested', z.object({ by: z.string(), reason: z.string().nullable() }).strict()),
  /** A rollback deployment of `robots` robots back to `toVersion` was started (one per version robots came from). */
  recordEvent('DeploymentRolledBack', z.object({ rollbackDeploymentId: DeploymentId, toVersion: ReleaseVersion, robots: z.number().int().positive() }).strict()),
  /** Robots that succeeded but cannot be rolled back (version before unknown, or that release is not in the store). */
  recordEvent('DeploymentRollbackSkipped', z.object({ robotIds: z.array(RobotId).max(1_000), count: z.number().int().positive(), reason: z.string() }).strict()),
  /** A robot of this deployment is back on its previous version (its rollback deployment succeeded on it). */
  recordEvent('DeploymentRobotRolledBack', z.object({ robotId: RobotId, rollbackDeploymentId: DeploymentId }).strict()),
]);
export type DeploymentRecordEvent = z.infer<typeof DeploymentRecordEvent>;
export type DeploymentRecordEventType = DeploymentRecordEvent['type'];

/** GET /api/v2/deployments: newest first, a page at a time (follow nextCursor). */
export const ListDeploymentsQuery = z
  .object({ limit: z.coerce.number().int().min(1).max(100).default(20), cursor: z.string().min(1).max(512).optional() })
  .strict();
export type ListDeploymentsQuery = z.infer<typeof ListDeploymentsQuery>;

/**
 * The robots' update events the deployment orchestrator consumes from the event log stream (its stream filter is
 * DEPLOYMENT_UPDATE_RECORD_PATTERNS in schemas/stream-filters.ts).
 */
export const ROBOT_UPDATE_EVENT_TYPES = [
  'RobotUpdateQueued',
  'RobotUpdateDeferred',
  'RobotUpdateStarted',
  'RobotUpdateSucceeded',
  'RobotUpdateFailed',
  'RobotUpdateRolledBack',
] as const;
