-- Issue 12: software deployments. RobotView gained `software` (functions/domain/robot-view.ts `softwareView`: the
-- version the robot runs and the update it is in), and the robots row the version as a column, for
-- GET /api/v2/robots?version=. The projector writes both with every event from now on. Rows projected before have
-- no update event folded in (none existed), so their view gets the empty software; a rebuild gives the same.
ALTER TABLE robots ADD COLUMN software_version text;

UPDATE robots
   SET view = view || '{"software": {"version": null, "update": null}}'::jsonb
 WHERE NOT (view ? 'software');

-- `?version=` walks this index from (version, after), as the other filters walk theirs (pg-fleet-queries.ts).
CREATE INDEX robots_software_version_idx ON robots (software_version, robot_id);
