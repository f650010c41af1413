import { defineConfig } from 'vitest/config';
import { POLL } from './test/support/poll.js';

// This machine runs Node 20; Lambda runs 22+. The SDK's warning about it would repeat in every test worker.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/**
 * Four projects, one run (`npm test`):
 * - unit: pure code and fakes, nothing started (no Java, no database, no broker) — `npm run test:unit` for a fast loop;
 * - infra: CDK stacks synthesized and checked with assertions and cdk-nag;
 * - integration: real parts (DynamoDB Local started once for the run by global-setup, PostgreSQL, brokers, processes),
 *   test/integration and the end-to-end tests in test/e2e;
 * - browser: the dashboard in Debian's Chromium (playwright-core) against the real local cloud, test/browser.
 */
export default defineConfig({
  test: {
    setupFiles: ['test/support/setup-env.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    expect: { poll: POLL }, // expect.poll's default wait (15 s, every 25 ms); vi.waitFor is passed POLL itself
    reporters: ['default', ['json', { outputFile: '.reports/vitest.json' }]],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { extends: true, test: { name: 'infra', include: ['test/infra/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          // Builds dashboard/dist (when older than its sources) once, before any test starts a local cloud.
          globalSetup: ['test/browser/global-setup.ts'],
        },
      },
    ],
  },
});
