import { fileURLToPath } from 'node:url';

// Powertools writes metrics and logs to stdout; keep test output readable and the SDK away from real AWS.
process.env.POWERTOOLS_METRICS_NAMESPACE ??= 'LekiwiHeartbeatTest';
process.env.POWERTOOLS_SERVICE_NAME ??= 'heartbeat-test';
process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
process.env.POWERTOOLS_TRACE_ENABLED ??= 'false';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.AWS_REGION ??= 'eu-west-1';
process.env.AWS_ACCESS_KEY_ID ??= 'local';
process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
// Local clouds the tests start (`npm start` in e2e and browser tests) serve dashboard/dist as it is, never building it:
// processes starting side by side would build into one directory at once. test/browser/global-setup.ts builds it once.
process.env.DASHBOARD_DIST ??= fileURLToPath(new URL('../../dashboard/dist', import.meta.url));
