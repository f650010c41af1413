import { RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';

/**
 * The account's IoT data endpoint host name (`xxxx-ats.iot.<region>.amazonaws.com`, DescribeEndpoint with
 * `iot:Data-ATS`), read at deploy time: Lambdas that publish to robots through IoT Core's data plane need it.
 */
export class IotDataEndpoint extends Construct {
  readonly host: string;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const describe = new cr.AwsCustomResource(this, 'Describe', {
      resourceType: 'Custom::IotDataEndpoint',
      onUpdate: {
        service: 'Iot',
        action: 'describeEndpoint',
        parameters: { endpointType: 'iot:Data-ATS' },
        physicalResourceId: cr.PhysicalResourceId.of('iot-data-ats-endpoint'),
      },
      // DescribeEndpoint has no resource-level permissions.
      policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: cr.AwsCustomResourcePolicy.ANY_RESOURCE }),
      installLatestAwsSdk: false,
      logGroup: new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }),
    });
    Validations.of(describe).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'iot:DescribeEndpoint has no resource-level permissions; it only reads the account endpoint host name.',
    });
    const stack = Stack.of(this);
    const provider = stack.node.tryFindChild(`AWS${cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace(/-/g, '')}`);
    if (!provider) throw new Error('IotDataEndpoint: the AwsCustomResource provider function was not where aws-cdk-lib puts it');
    Validations.of(provider).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason: 'The AwsCustomResource provider Lambda (owned by aws-cdk-lib) only writes its own logs with this AWS-maintained policy.',
    });
    this.host = describe.getResponseField('endpointAddress');
  }
}
