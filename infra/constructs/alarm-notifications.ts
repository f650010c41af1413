import { Aspects, type IAspect } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type { IConstruct } from 'constructs';

/**
 * Every CloudWatch alarm in `scope` notifies `topic` when it goes into ALARM, including alarms added later by anyone
 * (the aspect runs at synthesis, after all constructors). Invariant: an alarm nobody hears is a bug, so no alarm of
 * the app is without this action; each alarm gets it exactly once (an aspect visits each construct once).
 */
export function notifyOnAlarm(scope: IConstruct, topic: sns.ITopic): void {
  Aspects.of(scope).add(new AlarmNotifications(topic));
}

class AlarmNotifications implements IAspect {
  private readonly action: cloudwatch.IAlarmAction;

  constructor(topic: sns.ITopic) {
    this.action = new cloudwatchActions.SnsAction(topic);
  }

  visit(node: IConstruct): void {
    if (node instanceof cloudwatch.Alarm) node.addAlarmAction(this.action);
  }
}
