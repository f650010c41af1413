-- Issue 9, item 8: the robot's own messages the ingest refused (DeviceMessagesRejected), per robot: how many, and
-- the last reason (with its topic and time), so ops can find a robot with broken firmware or an unset clock.
ALTER TABLE robots
  ADD COLUMN rejected_messages integer NOT NULL DEFAULT 0,
  ADD COLUMN last_rejection    jsonb;

-- Views projected before carry no `rejectedMessages`: none of those robots had any counted.
UPDATE robots
   SET view = view || '{"rejectedMessages": {"count": 0, "last": null}}'::jsonb
 WHERE NOT (view ? 'rejectedMessages');

-- GET /api/v2/metrics counts the robots that sent any.
CREATE INDEX robots_rejected_idx ON robots (robot_id) WHERE rejected_messages > 0;
