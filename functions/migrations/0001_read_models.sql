-- Read models projected from the event log. Every table can be dropped and rebuilt from the log.

-- One row per robot: its folded state (the projector's fold input), the view the API returns, and the columns
-- the fleet queries filter on.
CREATE TABLE robots (
  robot_id             text PRIMARY KEY,
  model                text NOT NULL,
  status               text NOT NULL,
  lifecycle            text NOT NULL,
  healthy              boolean NOT NULL,
  deployable           boolean NOT NULL,
  teleoperation_active boolean NOT NULL,
  warning_alerts       integer NOT NULL,
  critical_alerts      integer NOT NULL,
  state                jsonb NOT NULL,
  view                 jsonb NOT NULL,
  telemetry            jsonb,
  telemetry_at         timestamptz,
  -- The last event folded into this row: older or repeated stream records are ignored.
  last_seq             bigint NOT NULL,
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX robots_status_idx ON robots (status, robot_id);
CREATE INDEX robots_model_idx ON robots (model, robot_id);
CREATE INDEX robots_lifecycle_idx ON robots (lifecycle, robot_id);
CREATE INDEX robots_healthy_idx ON robots (robot_id) WHERE healthy;
CREATE INDEX robots_deployable_idx ON robots (robot_id) WHERE deployable;

-- The event history, as the log holds it.
CREATE TABLE robot_events (
  robot_id    text NOT NULL,
  seq         bigint NOT NULL,
  event_id    text NOT NULL,
  type        text NOT NULL,
  version     integer NOT NULL,
  at          timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL,
  data        jsonb NOT NULL,
  PRIMARY KEY (robot_id, seq)
);
CREATE INDEX robot_events_type_at_idx ON robot_events (type, at);

-- One row per teleoperation session: opened by TeleoperationStarted, closed by TeleoperationStopped.
CREATE TABLE teleoperation_sessions (
  robot_id         text NOT NULL,
  started_seq      bigint NOT NULL,
  operator_address text,
  signals          jsonb NOT NULL DEFAULT '[]',
  score            double precision,
  started_at       timestamptz NOT NULL,
  stopped_seq      bigint,
  stopped_at       timestamptz,
  stop_reason      text,
  duration_ms      bigint,
  PRIMARY KEY (robot_id, started_seq)
);
CREATE UNIQUE INDEX teleoperation_sessions_open_idx ON teleoperation_sessions (robot_id) WHERE stopped_seq IS NULL;

-- Alerts raised by telemetry thresholds; open while cleared_seq is null.
CREATE TABLE alerts (
  robot_id      text NOT NULL,
  raised_seq    bigint NOT NULL,
  metric        text NOT NULL,
  severity      text NOT NULL,
  value         double precision NOT NULL,
  threshold     double precision NOT NULL,
  raised_at     timestamptz NOT NULL,
  cleared_seq   bigint,
  cleared_at    timestamptz,
  cleared_value double precision,
  PRIMARY KEY (robot_id, raised_seq)
);
CREATE UNIQUE INDEX alerts_open_idx ON alerts (robot_id, metric) WHERE cleared_seq IS NULL;

-- Telemetry samples (not events: they never enter the log). Kept for a retention period, see the projector.
CREATE TABLE telemetry_samples (
  robot_id    text NOT NULL,
  sampled_at  timestamptz NOT NULL,
  sample      jsonb NOT NULL,
  PRIMARY KEY (robot_id, sampled_at)
);
CREATE INDEX telemetry_samples_sampled_at_idx ON telemetry_samples (sampled_at);
