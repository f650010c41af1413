import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addIotStack, addStatefulStack } from '../../infra/heartbeat.js';
import { RETIREMENT_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

type Statement = { Action: string | string[]; Resource: unknown };

/**
 * The certificate retirer in the IoT stack (functions/app/retire-certificates.ts): its mapping on the event log stream
 * (only the two event types, never skipping), its on-failure queue, and a role that can only describe, revoke or
 * deactivate certificates and detach them from robot things.
 */
describe('certificate retirer', () => {
  let template: Template;
  let statements: Statement[];
  let logicalId: string;

  beforeAll(() => {
    const app = newApp();
    const stateful = addStatefulStack(app, STAGE);
    template = Template.fromStack(addIotStack(app, STAGE, stateful));
    const fn = functionsByHandler(template).get('stream-certificate-retirer')!;
    logicalId = fn.logicalId;
    const role = fn.properties.Role['Fn::GetAtt'][0] as string;
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: role }] } });
    statements = Object.values(policies).flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
  }, BUILD_TIMEOUT);

  const actionsOf = (statement: Statement) => (Array.isArray(statement.Action) ? statement.Action : [statement.Action]);
  const resourcesOf = (action: string) =>
    statements.filter((s) => actionsOf(s).includes(action)).flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).map(flatten));

  it('reads the event log stream from the start, filtered to re-images and rotation failures, retrying until records expire', () => {
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping', { Properties: { FunctionName: { Ref: logicalId } } }));
    expect(mappings).toHaveLength(1);
    const mapping = mappings[0]!.Properties;
    expect(flatten(mapping.EventSourceArn)).toMatch(/EventLog/);
    expect(mapping).toMatchObject({
      StartingPosition: 'TRIM_HORIZON',
      BisectBatchOnFunctionError: true,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      MaximumRetryAttempts: -1,
      ParallelizationFactor: 1,
    });
    expect(mapping.FilterCriteria.Filters.map((filter: { Pattern: string }) => JSON.parse(filter.Pattern))).toEqual(RETIREMENT_RECORD_PATTERNS);
    expect(flatten(mapping.DestinationConfig.OnFailure.Destination)).toMatch(/CertificateRetirerDlq/);
  });

  it('grants only DescribeCertificate/UpdateCertificate on certificates and DetachThingPrincipal on robot things', () => {
    const iotActions = [...new Set(statements.flatMap(actionsOf).filter((action) => action.startsWith('iot:')))].sort();
    expect(iotActions).toEqual(['iot:DescribeCertificate', 'iot:DetachThingPrincipal', 'iot:UpdateCertificate']);
    expect(resourcesOf('iot:UpdateCertificate').every((arn) => arn.endsWith(':cert/*'))).toBe(true);
    expect(resourcesOf('iot:DescribeCertificate').every((arn) => arn.endsWith(':cert/*'))).toBe(true);
    expect(resourcesOf('iot:DetachThingPrincipal').map((arn) => arn.replace(/.*:thing\//, 'thing/')).sort()).toEqual(['thing/lekiwi-*', 'thing/xle-*']);
    // Nothing that creates or attaches, and no write to the event log.
    const all = statements.flatMap(actionsOf);
    expect(all).not.toContain('iot:AttachThingPrincipal');
    expect(all).not.toContain('iot:CreateCertificateFromCsr');
    expect(all.filter((action) => /^dynamodb:(Put|Update|Delete|BatchWrite|TransactWrite)/.test(action))).toEqual([]);
  });

  it('alarms when it falls behind the stream', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'IteratorAge',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId } }],
    });
  });
});
