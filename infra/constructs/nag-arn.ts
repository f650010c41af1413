import { Stack, Token } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * A stack's region and account as cdk-nag writes them in a finding's id: the pseudo parameters (`<AWS::Region>`,
 * `<AWS::AccountId>`) in an environment-agnostic synth, the literal values when the stack has an account and region
 * (`cdk deploy` with credentials). An acknowledgement's id must use the same form, or it matches nothing and the
 * finding stands.
 */
export function nagEnvironment(scope: IConstruct): { readonly region: string; readonly account: string } {
  const stack = Stack.of(scope);
  return {
    region: Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region,
    account: Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account,
  };
}

/** `<region>:<account>` of an ARN in a cdk-nag finding's id (see nagEnvironment). */
export function nagRegionAccount(scope: IConstruct): string {
  const { region, account } = nagEnvironment(scope);
  return `${region}:${account}`;
}
