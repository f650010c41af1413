/**
 * The CDK app (cdk.json: `npx tsx infra/app.ts`). The stacks are assembled in heartbeat.ts so that the tests can
 * build the same app without synthesizing it here.
 */
import { createApp } from './heartbeat.js';

createApp().app.synth();
