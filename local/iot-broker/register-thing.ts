import {
  PROVISIONING_PARAMETERS,
  type PreProvisioningHookRequest,
  type PreProvisioningHookResponse,
  type ProvisioningExchange,
} from '../../schemas/provisioning.js';
import type { ThingRegistration } from '../thing-registry.js';
import type { BrokerLog } from './contract.js';
import type { CertificateOwnershipTokens } from './create-certificate-from-csr.js';
import type { ReservedTopicReplies, ReservedTopicRequest, ReservedTopicService } from './reserved-topics.js';
import { jsonObjectOf } from './json-payload.js';

/**
 * Fleet provisioning's RegisterThing, as the local IoT Core answers it
 * (https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html): the robot publishes
 * `{"certificateOwnershipToken": "…", "parameters": {"SerialNumber": "…", …}}` on
 * `$aws/provisioning-templates/<template>/provision/json`; the broker runs the template's pre-provisioning hook (the
 * very use case the Lambda runs, functions/app/provisioning/pre-provisioning-hook.ts, on the same DynamoDB table), then
 * the template — the thing `<model>-<serial>` created or kept, the certificate attached and ACTIVE (the thing policy
 * applies to every attached active certificate here) — and answers `{deviceConfiguration: {}, thingName}` on
 * `…/accepted`, or `{statusCode, errorCode, errorMessage}` on `…/rejected`.
 *
 * INVARIANTS
 * - an ownership token is redeemed at most once, within its hour, whatever the outcome (IoT Core's tokens are single
 *   use): an unknown, used or expired token is rejected 400 `InvalidCertificateOwnershipToken` and the hook is not
 *   called;
 * - nothing is registered unless the hook answered `allowProvisioning: true`; a refusal is 403 `AccessDenied` and, unlike
 *   AWS (which says only that), its errorMessage names the hook's reason (schemas/provisioning.ts HOOK_REFUSALS), which
 *   the agent maps to its failure reason;
 * - the thing is named by the template's `ThingName` parameter, which the hook sets (`<model>-<serial>`): a robot
 *   cannot choose its name;
 * - a re-image (a new certificate for an existing thing) keeps the thing and its history, and REVOKES its other
 *   certificates in the same registry write: from then on they are refused at connect;
 * - a hook that throws, or a registry that cannot be written, is a 500 `InternalFailure` (reserved-topics.ts), with the
 *   token spent: the robot starts again from its CSR.
 */

/** The hook as the broker calls it: the documented request in, the documented response out, and why it refused. */
export type ProvisioningHook = (
  request: PreProvisioningHookRequest,
) => Promise<{ readonly response: PreProvisioningHookResponse; readonly reason?: string | undefined }>;

/** The registry's RegisterThing step (local/thing-registry.ts `registerThing`). */
export interface ThingRegistrar {
  registerThing(thingName: string, certificateId: string, now?: Date): Promise<ThingRegistration>;
}

/** One RegisterThing decided, for logs and the provisioning benchmark. */
export interface RegisterThingOutcome {
  readonly clientId: string;
  readonly certificateId: string;
  readonly serial: string | undefined;
  readonly allowed: boolean;
  readonly reason?: string | undefined;
  readonly thingName?: string | undefined;
  readonly revoked?: readonly string[] | undefined;
  /** How long the hook took to answer. */
  readonly hookMs: number;
}

export interface RegisterThingOptions {
  readonly exchange: ProvisioningExchange;
  /** The template's ARN as IoT passes it to the hook (`templateArn`). */
  readonly templateArn: string;
  readonly tokens: CertificateOwnershipTokens;
  readonly hook: ProvisioningHook;
  readonly registry: ThingRegistrar;
  readonly log?: BrokerLog;
  readonly now?: () => number;
}

export function registerThingService(options: RegisterThingOptions): ReservedTopicService {
  const { tokens, hook, registry } = options;
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => undefined);
  return {
    name: 'RegisterThing',
    exchange: options.exchange,
    async handle(request: ReservedTopicRequest, reply: ReservedTopicReplies): Promise<void> {
      const parsed = registerThingRequestOf(request.payload);
      if (!parsed.ok) return reply.rejected({ statusCode: 400, errorCode: 'InvalidPayload', errorMessage: parsed.problem });
      if (parsed.token === '') {
        // What IoT Core answers (observed): 400 InvalidCertificateOwnershipToken, "cannot be empty".
        return reply.rejected({ statusCode: 400, errorCode: 'InvalidCertificateOwnershipToken', errorMessage: 'Certificate ownership token cannot be empty.' });
      }
      const owned = tokens.redeemCertificate(parsed.token);
      if (!owned) {
        return reply.rejected({
          statusCode: 400,
          errorCode: 'InvalidCertificateOwnershipToken',
          errorMessage: 'Certificate ownership token is invalid, expired (tokens last one hour) or already used: create a certificate again',
        });
      }
      const serial = parsed.parameters[PROVISIONING_PARAMETERS.serial];
      const started = now();
      const { response, reason } = await hook({
        claimCertificateId: request.certificate.certificateId,
        certificateId: owned.certificateId,
        certificatePem: owned.certificatePem,
        templateArn: options.templateArn,
        clientId: request.clientId,
        parameters: parsed.parameters,
      });
      const hookMs = now() - started;
      const outcome = { clientId: request.clientId, certificateId: owned.certificateId, serial, hookMs };
      if (!response.allowProvisioning) {
        const refused: RegisterThingOutcome = { ...outcome, allowed: false, reason };
        log({ level: 'info', message: 'RegisterThing refused by the pre-provisioning hook', ...refused });
        return reply.rejected({
          statusCode: 403,
          errorCode: 'AccessDenied',
          errorMessage: `The pre-provisioning hook denied the request${reason ? `: ${reason}` : ''}`,
        });
      }
      const parameters = { ...parsed.parameters, ...(response.parameterOverrides ?? {}) };
      const thingName = parameters[PROVISIONING_PARAMETERS.thingName];
      if (!thingName) throw new Error(`the template's ${PROVISIONING_PARAMETERS.thingName} parameter is unset (the hook sets it)`);
      const registration = await registry.registerThing(thingName, owned.certificateId);
      const registered: RegisterThingOutcome = { ...outcome, allowed: true, thingName, revoked: registration.revoked };
      log({
        level: 'info',
        message: registration.revoked.length > 0 ? 'RegisterThing: re-imaged robot registered, its previous certificates revoked' : 'RegisterThing: robot registered',
        ...registered,
        created: registration.created,
      });
      await reply.accepted({ deviceConfiguration: {}, thingName });
    },
  };
}

type Parsed =
  | { readonly ok: true; readonly token: string; readonly parameters: Record<string, string> }
  | { readonly ok: false; readonly problem: string };

/** `{certificateOwnershipToken: string, parameters?: {[name]: string}}`, as the MQTT API documents it. */
export function registerThingRequestOf(payload: Buffer): Parsed {
  const json = jsonObjectOf(payload);
  if (!json.ok) return json;
  const { certificateOwnershipToken: token, parameters = {} } = json.body;
  if (token !== undefined && typeof token !== 'string') return { ok: false, problem: 'certificateOwnershipToken must be a string' };
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) {
    return { ok: false, problem: 'parameters must be an object of strings' };
  }
  const entries = Object.entries(parameters);
  const bad = entries.find(([, value]) => typeof value !== 'string');
  if (bad) return { ok: false, problem: `parameters.${bad[0]} must be a string` };
  return { ok: true, token: token ?? '', parameters: Object.fromEntries(entries) as Record<string, string> };
}
