import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import * as cxapi from 'aws-cdk-lib/cx-api';
import type { Template } from 'aws-cdk-lib/assertions';
import type { StageOptions } from '../../infra/heartbeat.js';

/** Infra tests build the app with the same context (feature flags) as `cdk synth`, read from cdk.json. */
const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context?: Record<string, unknown>;
};

export const STAGE: StageOptions = { stage: 'test', dashboardOrigins: ['https://dashboard.example.com'] };

/** A stand-in for `dashboard/dist` (what `npm run dashboard:build` writes), so infra tests need no dashboard build. */
export const DASHBOARD_FIXTURE = fileURLToPath(new URL('./fixtures/dashboard-dist', import.meta.url));

/**
 * A fresh app with cdk.json's context. The per-stack tests look at templates only, so by default they skip esbuild
 * bundling (about a second per function) and CDK's built-in CloudFormation schema validation (seconds per synth, and
 * it only ever warns). nag.test.ts builds the whole app with bundling on, as `cdk synth` does.
 */
export function newApp(options: { bundling?: boolean; cloudFormationValidation?: boolean } = {}): App {
  return new App({
    context: {
      ...cdkJson.context,
      dashboardBundle: DASHBOARD_FIXTURE,
      // The CLI's own switch for `cdk deploy --exclusively`: the stacks (none here) whose assets are bundled.
      ...(options.bundling ? {} : { [cxapi.BUNDLING_STACKS]: [] }),
    },
    builtinCloudFormationValidation: options.cloudFormationValidation ?? false,
  });
}

/** Bundling every function with esbuild takes a few seconds per app alone, minutes when the whole suite shares two cores: hooks that build one get this timeout. */
export const BUILD_TIMEOUT = 300_000;

type Resources = Record<string, { Type: string; Properties?: Record<string, any>; [key: string]: unknown }>;

/** The Lambda functions of a template by their Powertools service name (= handler file name). */
export function functionsByHandler(template: Template): Map<string, { logicalId: string; properties: Record<string, any> }> {
  const out = new Map<string, { logicalId: string; properties: Record<string, any> }>();
  for (const [logicalId, resource] of Object.entries(template.findResources('AWS::Lambda::Function') as Resources)) {
    const name = resource.Properties?.Environment?.Variables?.POWERTOOLS_SERVICE_NAME;
    if (typeof name === 'string') out.set(name, { logicalId, properties: resource.Properties ?? {} });
  }
  return out;
}

/** `{ "Fn::Join": ["", [...]] }` (and plain strings/refs) flattened to one readable string. */
export function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    if ('Fn::Join' in obj) {
      const [sep, parts] = obj['Fn::Join'] as [string, unknown[]];
      return parts.map(flatten).join(sep);
    }
    if ('Ref' in obj) return `<${String(obj.Ref)}>`;
    if ('Fn::GetAtt' in obj) return `<${(obj['Fn::GetAtt'] as string[]).join('.')}>`;
    if ('Fn::ImportValue' in obj) return `<import:${flatten(obj['Fn::ImportValue'])}>`;
  }
  return JSON.stringify(value);
}
