import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Stack, Validations, type App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type HeartbeatStacks } from '../../infra/heartbeat.js';
import { MIGRATIONS_DIR } from '../../infra/stacks/api-stack.js';
import { BUILD_TIMEOUT, flatten, functionsByHandler, newApp } from './helpers.js';

interface Acknowledgement {
  readonly path: string;
  readonly id: string;
  readonly reason: string;
}

/** Acknowledgements recorded with `Validations.of(construct).acknowledge()`, read from construct metadata. */
function acknowledgements(app: App): Acknowledgement[] {
  const out: Acknowledgement[] = [];
  for (const construct of app.node.findAll()) {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY || !entry.data) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        out.push({ path: construct.node.path, id: id.replace(/^annotation::/i, ''), reason });
      }
    }
  }
  return out;
}

/** cdk-nag's AwsSolutions pack with acknowledgements ignored: what the app would be blamed for without them. */
class UnacknowledgedAwsSolutionsChecks extends AwsSolutionsChecks {}
Object.defineProperty(UnacknowledgedAwsSolutionsChecks.prototype, 'isAcknowledged', { value: () => false });

const covers = (ack: Acknowledgement, ruleName: string, resourcePath: string): boolean =>
  ack.id === ruleName && (resourcePath === ack.path || resourcePath.startsWith(`${ack.path}/`));

/**
 * The whole app as `cdk synth` builds it: every function bundled by esbuild, the AwsSolutions pack registered as a
 * validation plugin. (CDK's built-in CloudFormation schema validation stays off: it only warns, and costs seconds.)
 */
describe('the whole app', () => {
  let app: App;
  let stacks: HeartbeatStacks;
  let synthError: unknown;

  beforeAll(() => {
    ({ app, stacks } = createApp(newApp({ bundling: true })));
    try {
      app.synth();
    } catch (error) {
      synthError = error;
    }
  }, BUILD_TIMEOUT);

  // Each App synthesizes into its own temporary directory; the bundles make it tens of MB.
  afterAll(() => rmSync(app.outdir, { recursive: true, force: true }));

  describe('cdk-nag AwsSolutions', () => {
    it('synthesizes with no unacknowledged error', () => {
      // In a test run CDK throws the whole validation report, naming each rule id and construct path.
      expect(synthError === undefined ? '' : String((synthError as Error).message ?? synthError)).toBe('');
    });

    it('reports no unacknowledged finding when the pack is run directly', () => {
      const report = new AwsSolutionsChecks().validateScope(app);
      const findings = report.violations.flatMap((v) =>
        v.violatingResources.map((r) => `${v.severity} ${v.ruleName} at ${r.constructPath}: ${v.description}`),
      );
      expect(findings).toEqual([]);
    });

    it('gives a reason with every acknowledgement', () => {
      const mine = acknowledgements(app).filter((ack) => ack.id.startsWith('AwsSolutions-'));
      expect(mine.length).toBeGreaterThan(0);
      for (const ack of mine) expect(ack.reason.trim().length, `${ack.id} at ${ack.path}`).toBeGreaterThan(30);
    });

    it('keeps no acknowledgement that no longer matches a finding', () => {
      // Guard: if cdk-nag renamed its private check, the subclass above would silently honour acknowledgements.
      expect(typeof (AwsSolutionsChecks.prototype as unknown as Record<string, unknown>).isAcknowledged).toBe('function');
      const raw = new UnacknowledgedAwsSolutionsChecks().validateScope(app);
      const findings = raw.violations.flatMap((v) =>
        v.violatingResources.map((r) => ({ ruleName: v.ruleName, path: r.constructPath ?? '' })),
      );
      const stale = acknowledgements(app)
        .filter((ack) => ack.id.startsWith('AwsSolutions-'))
        .filter((ack) => !findings.some((f) => covers(ack, f.ruleName, f.path)))
        .map((ack) => `${ack.id} at ${ack.path}`);
      expect(stale).toEqual([]);
    });
  });

  it('makes the API and IoT stacks depend on the stateful stack only (no cycles, no API↔IoT coupling)', () => {
    expect(stacks.stateful.dependencies).toEqual([]);
    expect(stacks.api.dependencies.map((s) => s.stackName)).toEqual([stacks.stateful.stackName]);
    expect(stacks.iot.dependencies.map((s) => s.stackName)).toEqual([stacks.stateful.stackName]);
  });

  describe('bundles', () => {
    /** The staged asset directory of each function of a stack, by handler name. */
    const bundlesOf = (stack: Stack): Map<string, string> => {
      const out = new Map<string, string>();
      for (const [name, fn] of functionsByHandler(Template.fromStack(stack))) {
        const key = flatten(fn.properties.Code.S3Key);
        out.set(name, path.join(app.outdir, `asset.${key.replace(/\.zip$/, '')}`));
      }
      return out;
    };

    it('are ESM with the require banner and a source map, one per function', () => {
      const bundles = new Map([...bundlesOf(stacks.api), ...bundlesOf(stacks.iot)]);
      // Every handler file is deployed, each as its own function.
      expect([...bundles.keys()].sort()).toEqual(readdirSync('functions/handlers').map((file) => file.replace(/\.ts$/, '')).sort());
      for (const [name, dir] of bundles) {
        const code = readFileSync(path.join(dir, 'index.mjs'), 'utf8');
        expect(code.startsWith('import { createRequire'), name).toBe(true);
        expect(existsSync(path.join(dir, 'index.mjs.map')), name).toBe(true);
      }
    });

    it('load as ES modules in Node and export `handler` (no dynamic require left unresolved)', () => {
      const bundles = [...bundlesOf(stacks.api), ...bundlesOf(stacks.iot)];
      // One Node process imports every bundle, with the environment each handler parses at cold start.
      const script = `
        const results = {};
        for (const [name, file] of ${JSON.stringify(bundles.map(([name, dir]) => [name, path.join(dir, 'index.mjs')]))}) {
          try { results[name] = typeof (await import(file)).handler; } catch (e) { results[name] = 'ERROR ' + e.message; }
        }
        console.log(JSON.stringify(results));`;
      const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          PATH: process.env.PATH,
          AWS_REGION: 'eu-west-1',
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          EVENT_LOG_TABLE: 'event-log',
          CONNECTIONS_TABLE: 'connections',
          FACTORY_TABLE: 'factory',
          DEPLOYMENTS_TABLE: 'deployments',
          ARTIFACT_BUCKET: 'artifacts',
          THING_ARN_PREFIX: 'arn:aws:iot:eu-west-1:123456789012:thing/',
          WS_ENDPOINT: 'https://example.execute-api.eu-west-1.amazonaws.com/live',
          JWT_ISSUER: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_example',
          JWT_AUDIENCE: 'client',
          DB_HOST: 'proxy.example',
          DB_PORT: '5432',
          DB_NAME: 'heartbeat',
          DB_USER: 'heartbeat_admin',
          DB_IAM_AUTH: 'true',
          MIGRATIONS_DIR: MIGRATIONS_DIR,
          POWERTOOLS_METRICS_NAMESPACE: 'LekiwiHeartbeat',
        },
      });
      const lastLine = run.stdout.trim().split('\n').at(-1) ?? '';
      expect(lastLine, run.stderr).toMatch(/^\{/);
      const results = JSON.parse(lastLine) as Record<string, string>;
      expect(results).toEqual(Object.fromEntries(bundles.map(([name]) => [name, 'function'])));
    });

    it('ship the SQL migrations inside the db-migrate bundle', () => {
      const dir = bundlesOf(stacks.api).get('db-migrate')!;
      const sources = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).sort();
      expect(sources.length).toBeGreaterThan(0);
      expect(readdirSync(path.join(dir, 'migrations')).sort()).toEqual(sources);
    });
  });
});

describe('cdk-nag with an environment', () => {
  it('stays clean when the stacks have an account and region (a deploy with credentials writes ARNs literally)', () => {
    // No bundling: the findings depend on the templates, not the code. The acknowledgements' ids must follow the
    // literal region and account (infra/constructs/nag-arn.ts), or every one of them would match nothing.
    const scoped = newApp();
    scoped.node.setContext('account', '123456789012');
    scoped.node.setContext('region', 'eu-west-1');
    const { app: withEnvironment } = createApp(scoped);
    const report = new AwsSolutionsChecks().validateScope(withEnvironment);
    const findings = report.violations.flatMap((v) =>
      v.violatingResources.map((r) => `${v.severity} ${v.ruleName} at ${r.constructPath}: ${v.description}`),
    );
    expect(findings).toEqual([]);
  });
});
