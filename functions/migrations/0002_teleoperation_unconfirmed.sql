-- Issue 9, item 1: a dropped link no longer ends a teleoperation session; it leaves it open but unconfirmed
-- (teleoperation.confirmed = false) until the agent states its teleoperation again or the robot stays offline past
-- the timeout. Rows projected before carry no `confirmed`: every session they show was confirmed.
UPDATE robots
   SET state = jsonb_set(state, '{teleoperation,confirmed}', 'true'::jsonb),
       view  = jsonb_set(view, '{teleoperation,confirmed}', 'true'::jsonb)
 WHERE NOT (view -> 'teleoperation' ? 'confirmed');

-- The offline-timeout sweep (every minute) looks only at robots offline with a session open: a handful of rows.
CREATE INDEX robots_offline_teleoperation_idx ON robots (robot_id) WHERE teleoperation_active AND status = 'offline';
