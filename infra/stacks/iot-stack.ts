import { Arn, ArnFormat, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { RESOURCE_TYPE, THING_NAME_VARIABLE, THING_POLICY } from '../../schemas/thing-policy.js';
import { TOPIC_RULES, type RuleTarget } from '../../schemas/topics.js';
import { AppFunction } from '../constructs/app-function.js';

/** Thing types are the robot models; the thing name is `<model>-<serial>`. */
export const THING_TYPES = {
  lekiwi: 'LeRobot LeKiwi mobile manipulator',
  xle: 'XLeRobot dual-arm robot',
} as const;
export const THING_GROUP = 'heartbeat-fleet';
/** The policy variable IoT Core replaces with the connected certificate's thing name. */
export const THING_NAME = THING_NAME_VARIABLE;

export interface IotStackProps extends StackProps {
  readonly eventLog: dynamodb.ITable;
  /** Asynchronous invocations of the ingest Lambdas that failed all of Lambda's retries. */
  readonly ingestDlq: sqs.IQueue;
  /** The rules' error action: messages IoT could not hand to the Lambda action. */
  readonly ruleErrorDlq: sqs.IQueue;
}

/**
 * The robot link: thing types and group, the thing policy, and the topic rules with the ingest Lambdas they invoke.
 *
 * The ingest Lambdas (iot-presence, iot-telemetry, iot-robot-events) live here, not in the API stack: a rule needs
 * the function's ARN and the function's invoke permission needs the rule's ARN, so keeping both in one stack keeps
 * that pair from becoming a cross-stack cycle. This stack and the API stack each depend only on the stateful
 * stack, never on each other, and the ingest path can be deployed without touching the API.
 */
export class IotStack extends Stack {
  readonly ingestFunctions: Record<RuleTarget, lambda.IFunction>;
  readonly thingPolicy: iot.CfnPolicy;
  readonly topicRules: Record<keyof typeof TOPIC_RULES, iot.CfnTopicRule>;

  constructor(scope: Construct, id: string, props: IotStackProps) {
    super(scope, id, props);

    for (const [name, description] of Object.entries(THING_TYPES)) {
      new iot.CfnThingType(this, `ThingType-${name}`, {
        thingTypeName: name,
        thingTypeProperties: { thingTypeDescription: description, searchableAttributes: ['serial'] },
      });
    }
    new iot.CfnThingGroup(this, 'FleetGroup', {
      thingGroupName: THING_GROUP,
      thingGroupProperties: { thingGroupDescription: 'Every robot managed by Lekiwi Heartbeat' },
    });

    this.thingPolicy = new iot.CfnPolicy(this, 'ThingPolicy', { policyDocument: thingPolicyDocument(this) });

    // ---- Ingest Lambdas, outside the VPC: they only append to DynamoDB.
    const ingest = (handler: RuleTarget, description: string): lambda.IFunction => {
      const fn = new AppFunction(this, constructIdOf(handler), {
        handler,
        description,
        environment: { EVENT_LOG_TABLE: props.eventLog.tableName },
        deadLetterQueue: props.ingestDlq,
      }).fn;
      props.eventLog.grantReadWriteData(fn);
      return fn;
    };
    this.ingestFunctions = {
      'iot-presence': ingest('iot-presence', 'IoT lifecycle events to RobotConnected/RobotDisconnected'),
      'iot-telemetry': ingest('iot-telemetry', 'Telemetry samples to the head item; alert thresholds'),
      'iot-robot-events': ingest('iot-robot-events', 'Facts reported by robot agents to the event log'),
    };

    // ---- Rules: SQL and targets come from schemas/topics.ts, shared with the agent and the local cloud.
    const errorRole = new iam.Role(this, 'RuleErrorActionRole', {
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com'),
      description: 'Lets the heartbeat IoT rules put undeliverable messages on the error dead-letter queue',
    });
    props.ruleErrorDlq.grantSendMessages(errorRole);

    type RuleKey = keyof typeof TOPIC_RULES;
    const rules = {} as Record<RuleKey, iot.CfnTopicRule>;
    for (const key of Object.keys(TOPIC_RULES) as RuleKey[]) {
      const rule = TOPIC_RULES[key];
      const fn = this.ingestFunctions[rule.target];
      const topicRule = new iot.CfnTopicRule(this, `Rule-${key}`, {
        // Fixed names: Basic Ingest topics (`$aws/rules/<name>/...`) address the rule by name.
        ruleName: rule.name,
        topicRulePayload: {
          sql: rule.sql,
          awsIotSqlVersion: '2016-03-23',
          description: rule.description,
          ruleDisabled: false,
          actions: [{ lambda: { functionArn: fn.functionArn } }],
          errorAction: { sqs: { queueUrl: props.ruleErrorDlq.queueUrl, roleArn: errorRole.roleArn, useBase64: false } },
        },
      });
      fn.addPermission(`InvokeFromRule-${key}`, {
        principal: new iam.ServicePrincipal('iot.amazonaws.com'),
        action: 'lambda:InvokeFunction',
        sourceArn: topicRule.attrArn,
        sourceAccount: this.account,
      });
      rules[key] = topicRule;
    }
    this.topicRules = rules;

    new CfnOutput(this, 'ThingPolicyName', {
      value: this.thingPolicy.ref,
      description: 'Attach to each robot certificate (the provisioning template does this)',
    });
  }
}

/** `iot-presence` → `IotPresence`: construct ids follow the handler file names. */
function constructIdOf(handler: string): string {
  return handler
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}

/**
 * The policy every robot certificate carries, built from schemas/thing-policy.ts (the local broker enforces the same
 * statements). Each resource names the connected thing through `${iot:Connection.Thing.ThingName}`, so a robot can
 * connect, publish and subscribe only as itself. The ARNs are built with Fn::Join (never Fn::Sub, which would try to
 * resolve the policy variable).
 */
export function thingPolicyDocument(stack: Stack): Record<string, unknown> {
  const iotArn = (resource: string, resourceName: string): string =>
    Arn.format({ service: 'iot', resource, resourceName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, stack);
  return {
    Version: '2012-10-17',
    Statement: THING_POLICY.map((statement) => {
      const arns = statement.resources.map((name) => iotArn(RESOURCE_TYPE[statement.action], name));
      return {
        Sid: statement.sid,
        Effect: 'Allow',
        Action: `iot:${statement.action}`,
        Resource: arns.length === 1 ? arns[0] : arns,
        ...(statement.condition ? { Condition: statement.condition } : {}),
      };
    }),
  };
}
