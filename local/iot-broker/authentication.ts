import { X509Certificate, createHash } from 'node:crypto';
import type * as tls from 'node:tls';
import type { AuthenticateError, Client, ConnectPacket } from 'aedes';
import { CLAIM_CLIENT_ID_PREFIX } from '../../schemas/provisioning.js';
import { THING_POLICY, type ThingPolicyStatement, isAllowed } from '../../schemas/thing-policy.js';
import { describeError } from '../../lib/describe-error.js';
import type { BrokerLog, ClaimAdmission, ThingRegistryView } from './contract.js';

/**
 * Who a connection is: IoT Core's X.509 authentication of an MQTT CONNECT, and the keep-alive it grants.
 *
 * INVARIANTS
 * - a client is admitted only if its TLS peer certificate (already verified against the CA by the TLS listener)
 *   has a single CN equal to the client id, the certificate (by its id, the SHA-256 of its DER) is attached to the
 *   thing of that name in the registry, and the thing policy allows `Connect` for it; otherwise CONNACK 5 (not
 *   authorized) and the connection is closed;
 * - a registry that cannot be read, or a broker that is stopping, refuses with CONNACK 3 (server unavailable);
 * - with `claims` given, a client id starting with `claim-` is instead admitted if its certificate is a claim
 *   certificate (its CN is the batch's, not the client id) and the claim policy allows `Connect`; it then acts
 *   under the claim policy. Without `claims`, such a client id is checked like any other;
 * - `onAdmitted` runs, with the certificate identity and the policy the client acts under, exactly once per admitted
 *   client, before aedes is told;
 * - a keep-alive below the minimum is raised to it, 0 (none) and anything above IoT's maximum become the maximum.
 */

/** IoT Core's keep-alive range: a request of 0 (none) gets the maximum. */
export const MAX_KEEP_ALIVE_SECONDS = 1200;
/** MQTT 3.1.1 CONNACK return codes aedes passes through. */
export const SERVER_UNAVAILABLE = 3;
export const NOT_AUTHORIZED = 5;

/** The X.509 principal of a connection, as IoT Core knows it. */
export interface CertificateIdentity {
  /** SHA-256 of the DER certificate, hex: IoT Core's certificate id and the lifecycle principalIdentifier. */
  readonly certificateId: string;
  readonly certificatePem: string;
}

/** Throws unless `minKeepAliveSeconds` is a whole number within IoT Core's keep-alive range. */
export function checkMinKeepAlive(minKeepAlive: number): void {
  if (!Number.isInteger(minKeepAlive) || minKeepAlive < 1 || minKeepAlive > MAX_KEEP_ALIVE_SECONDS) {
    throw new Error(`minKeepAliveSeconds must be a whole number of seconds from 1 to ${MAX_KEEP_ALIVE_SECONDS}, got ${minKeepAlive}`);
  }
}

/** The keep-alive IoT Core grants a client that asks for `requested` seconds. */
export function grantedKeepAlive(requested: number, minKeepAlive: number): number {
  return requested === 0 ? MAX_KEEP_ALIVE_SECONDS : Math.min(Math.max(requested, minKeepAlive), MAX_KEEP_ALIVE_SECONDS);
}

/** Sets the CONNECT packet's keep-alive to the granted one (aedes arms its 1.5 × keep-alive timer from it). */
export function raiseKeepAlive(packet: ConnectPacket, minKeepAlive: number, log: BrokerLog): void {
  const requested = packet.keepalive ?? 0;
  const granted = grantedKeepAlive(requested, minKeepAlive);
  if (granted !== requested) {
    log({ level: 'debug', message: 'Keep-alive adjusted to IoT Core limits', clientId: packet.clientId, requested, granted });
  }
  packet.keepalive = granted;
}

type Identified = { readonly ok: true; readonly identity: CertificateIdentity } | { readonly ok: false; readonly why: string; readonly certificateId?: string };
type PeerCertificate = Partial<Pick<tls.PeerCertificate, 'raw' | 'subject'>> | undefined;

/**
 * The certificate identity of a client id's peer certificate, or why it cannot be that client's. `checkCommonName`
 * false: any CN will do (a claim certificate).
 */
export function identifyClient(certificate: PeerCertificate, clientId: string, { checkCommonName = true } = {}): Identified {
  if (!certificate?.raw) return { ok: false, why: 'no client certificate' };
  const certificateId = createHash('sha256').update(certificate.raw).digest('hex');
  if (!checkCommonName) return { ok: true, identity: { certificateId, certificatePem: new X509Certificate(certificate.raw).toString() } };
  const commonName: unknown = certificate.subject?.CN;
  if (typeof commonName !== 'string') return { ok: false, why: 'the certificate has no single CN', certificateId };
  if (clientId !== commonName) return { ok: false, why: `the client id is not the certificate's CN "${commonName}"`, certificateId };
  return { ok: true, identity: { certificateId, certificatePem: new X509Certificate(certificate.raw).toString() } };
}

export interface AuthenticatorOptions {
  readonly registry: ThingRegistryView;
  readonly log: BrokerLog;
  readonly isStopping: () => boolean;
  readonly claims?: ClaimAdmission | undefined;
  readonly onAdmitted: (client: Client, identity: CertificateIdentity, policy: readonly ThingPolicyStatement[]) => void;
}

type AuthenticateHook = (client: Client, username: unknown, password: unknown, done: (error: AuthenticateError | null, success: boolean | null) => void) => void;

/** aedes's `authenticate` hook. */
export function authenticator({ registry, log, isStopping, claims, onAdmitted }: AuthenticatorOptions): AuthenticateHook {
  return (client, _username, _password, done) => {
    const refuse = (why: string, fields: Record<string, unknown> = {}, returnCode = NOT_AUTHORIZED): void => {
      log({ level: 'warn', message: `MQTT connection refused: ${why}`, clientId: client.id, ...fields });
      done(Object.assign(new Error(why), { returnCode }) as AuthenticateError, false);
    };
    if (isStopping()) return refuse('the broker is stopping', {}, SERVER_UNAVAILABLE);
    const claim = claims !== undefined && client.id.startsWith(CLAIM_CLIENT_ID_PREFIX) ? claims : undefined;
    const identified = identifyClient((client.conn as tls.TLSSocket).getPeerCertificate?.(), client.id, { checkCommonName: !claim });
    if (!identified.ok) return refuse(identified.why, identified.certificateId ? { certificateId: identified.certificateId } : {});
    const { certificateId } = identified.identity;
    const admissible = claim
      ? claim.isClaimCertificate(certificateId).then((ok) => (ok ? undefined : `certificate ${certificateId} is not a claim certificate`))
      : registry.isAttached(client.id, certificateId).then((ok) => (ok ? undefined : `certificate ${certificateId} is not attached to a thing named "${client.id}"`));
    const policy = claim?.policy ?? THING_POLICY;
    admissible.then(
      (refusal) => {
        if (refusal) return refuse(refusal, { certificateId });
        if (!isAllowed('Connect', client.id, client.id, policy)) {
          return refuse(`the ${claim ? 'claim' : 'thing'} policy does not allow this client id`, { certificateId });
        }
        onAdmitted(client, identified.identity, policy);
        done(null, true);
      },
      (error: unknown) => {
        log({ level: 'error', message: 'The thing registry could not be read', error: describeError(error) });
        refuse('the thing registry could not be read', { certificateId }, SERVER_UNAVAILABLE);
      },
    );
  };
}
