-- Issue 11, item 4: the fleet's certificate ages. RobotView gained `certificate` (functions/domain/robot-view.ts
-- `certificateView`); the projector writes it with every event from now on. Views projected before lack it: they get
-- it here from the stored state, by the same rule (the rotated-to certificate, else the one provisioning admitted,
-- else null), so the API never answers a view without the field. A rebuild of the read models gives the same result.
UPDATE robots
   SET view = view || jsonb_build_object('certificate',
     CASE
       WHEN state ? 'certificate' THEN jsonb_build_object(
         'id', state->'certificate'->'id',
         'issuedAt', CASE
           WHEN state->'certificate'->>'rotatedAt' IS NOT NULL THEN state->'certificate'->'rotatedAt'
           WHEN state->'provisioning'->>'certificateId' = state->'certificate'->>'id' THEN state->'provisioning'->'at'
           ELSE 'null'::jsonb END,
         'notAfter', COALESCE(state->'certificate'->'notAfter', 'null'::jsonb),
         'rotatedAt', COALESCE(state->'certificate'->'rotatedAt', 'null'::jsonb),
         'lastRotationFailure', CASE
           WHEN jsonb_typeof(state->'certificate'->'lastFailure') = 'object' THEN jsonb_build_object(
             'reason', state->'certificate'->'lastFailure'->'reason',
             'detail', COALESCE(state->'certificate'->'lastFailure'->'detail', 'null'::jsonb),
             'at', state->'certificate'->'lastFailure'->'at')
           ELSE 'null'::jsonb END)
       WHEN state ? 'provisioning' THEN jsonb_build_object(
         'id', state->'provisioning'->'certificateId',
         'issuedAt', state->'provisioning'->'at',
         'notAfter', COALESCE(state->'provisioning'->'notAfter', 'null'::jsonb),
         'rotatedAt', 'null'::jsonb,
         'lastRotationFailure', 'null'::jsonb)
       ELSE 'null'::jsonb
     END)
 WHERE NOT (view ? 'certificate');
