import { createHash, createHmac } from 'node:crypto';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { InvalidCsrError, type CertificateRegistry } from '../app/certificate-rotation.js';

/**
 * AWS IoT's certificate registry for certificate rotation (functions/app/certificate-rotation.ts), through IoT's
 * control-plane REST API signed with SigV4: CreateCertificateFromCsr (setAsActive), AttachThingPrincipal,
 * DescribeCertificate, ListPrincipalThings, UpdateCertificate (INACTIVE) and DetachThingPrincipal — exactly the
 * actions the CertificateRotation function's role is granted (infra/stacks/iot-stack.ts).
 *
 * Why not @aws-sdk/client-iot: it is not a dependency of this repository yet. This adapter needs only the six calls
 * above; replacing it with the SDK client is a drop-in change behind the same CertificateRegistry port.
 */

type Fetch = typeof fetch;

/** SigV4's hash, on Node's crypto (HMAC when given a secret). */
class NodeSha256 {
  private readonly hash;
  constructor(secret?: string | Uint8Array) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', secret);
  }
  update(data: string | Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

export class IotApiError extends Error {
  override readonly name = 'IotApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface IotCertificateRegistryOptions {
  readonly region: string;
  /** Default `https://iot.<region>.amazonaws.com`. */
  readonly endpoint?: string;
  readonly fetch?: Fetch;
  readonly credentials?: ConstructorParameters<typeof SignatureV4>[0]['credentials'];
}

export class IotCertificateRegistry implements CertificateRegistry {
  private readonly endpoint: URL;
  private readonly signer: SignatureV4;
  private readonly fetch: Fetch;

  constructor(options: IotCertificateRegistryOptions) {
    this.endpoint = new URL(options.endpoint ?? `https://iot.${options.region}.amazonaws.com`);
    this.signer = new SignatureV4({
      service: 'iot',
      region: options.region,
      credentials: options.credentials ?? defaultProvider(),
      sha256: NodeSha256 as unknown as ConstructorParameters<typeof SignatureV4>[0]['sha256'],
    });
    this.fetch = options.fetch ?? fetch;
  }

  async issue(thingName: string, csrPem: string): Promise<{ certificateId: string; certificatePem: string }> {
    let created: { certificateArn: string; certificateId: string; certificatePem: string };
    try {
      created = await this.call('POST', '/certificates', { setAsActive: 'true' }, {}, { certificateSigningRequest: csrPem });
    } catch (error) {
      if (error instanceof IotApiError && error.status === 400) throw new InvalidCsrError(error.message);
      throw error;
    }
    await this.call('PUT', `/things/${encodeURIComponent(thingName)}/principals`, {}, { 'x-amzn-principal': created.certificateArn });
    return { certificateId: created.certificateId, certificatePem: created.certificatePem };
  }

  async standing(thingName: string, certificateId: string): Promise<'active' | 'inactive' | 'not-attached'> {
    const described = await this.describe(certificateId);
    if (!described) return 'not-attached';
    const { things } = await this.call<{ things?: string[] }>('GET', '/principals/things', { maxResults: '250' }, { 'x-amzn-principal': described.certificateArn });
    if (!(things ?? []).includes(thingName)) return 'not-attached';
    return described.status === 'ACTIVE' ? 'active' : 'inactive';
  }

  async retire(thingName: string, certificateId: string): Promise<void> {
    const described = await this.describe(certificateId);
    if (!described) return;
    await this.call('PUT', `/certificates/${certificateId}`, { newStatus: 'INACTIVE' });
    await this.call('DELETE', `/things/${encodeURIComponent(thingName)}/principals`, {}, { 'x-amzn-principal': described.certificateArn });
  }

  async notAfter(certificateId: string): Promise<string | null> {
    const notAfter = (await this.describe(certificateId))?.validity?.notAfter;
    return typeof notAfter === 'number' ? new Date(notAfter * 1000).toISOString() : null;
  }

  private async describe(
    certificateId: string,
  ): Promise<{ certificateArn: string; status: string; validity?: { notAfter?: number } } | undefined> {
    try {
      const { certificateDescription } = await this.call<{ certificateDescription: { certificateArn: string; status: string; validity?: { notAfter?: number } } }>(
        'GET',
        `/certificates/${certificateId}`,
      );
      return certificateDescription;
    } catch (error) {
      if (error instanceof IotApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  private async call<T = Record<string, never>>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    query: Record<string, string> = {},
    headers: Record<string, string> = {},
    body?: unknown,
  ): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const signed = await this.signer.sign({
      method,
      protocol: this.endpoint.protocol,
      hostname: this.endpoint.hostname,
      path,
      query,
      headers: { host: this.endpoint.host, ...headers, ...(payload ? { 'content-type': 'application/json' } : {}) },
      ...(payload ? { body: payload } : {}),
    });
    const url = new URL(path, this.endpoint);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    const response = await this.fetch(url, { method, headers: signed.headers as Record<string, string>, ...(payload ? { body: payload } : {}) });
    const text = await response.text();
    if (!response.ok) {
      let parsed: { message?: string; __type?: string } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        // not JSON: the status says enough
      }
      const code = response.headers.get('x-amzn-errortype')?.split(':')[0] ?? parsed.__type ?? `HTTP${response.status}`;
      throw new IotApiError(response.status, code, `IoT ${method} ${path}: ${code}: ${parsed.message ?? text.slice(0, 200)}`);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }
}
