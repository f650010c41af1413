import {
  AttachThingPrincipalCommand,
  CreateCertificateFromCsrCommand,
  DescribeCertificateCommand,
  DetachThingPrincipalCommand,
  InvalidRequestException,
  IoTClient,
  ListPrincipalThingsCommand,
  ResourceNotFoundException,
  ThrottlingException,
  UnauthorizedException,
  UpdateCertificateCommand,
} from '@aws-sdk/client-iot';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { InvalidCsrError } from '../../functions/app/certificate-rotation.js';
import { IotCertificateRegistry, IotRegistryError } from '../../functions/adapters/iot-certificate-registry.js';

/**
 * The certificate-rotation function's IoT adapter (functions/adapters/iot-certificate-registry.ts) on the SDK's IoT
 * client. IoT's control plane cannot run here, so aws-sdk-client-mock stands in for it: these tests pin the calls
 * made, their parameters, and how IoT's errors map to what the use case understands.
 */
const THING = 'lekiwi-LK0001';
const ID = 'a'.repeat(64);
const ARN = `arn:aws:iot:eu-west-1:123456789012:cert/${ID}`;
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n';
const meta = (httpStatusCode: number) => ({ $metadata: { httpStatusCode } });

const iot = mockClient(IoTClient);
const registry = new IotCertificateRegistry(new IoTClient({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIA', secretAccessKey: 'x' } }));

function described(status: 'ACTIVE' | 'INACTIVE' | 'REVOKED', notAfter?: Date) {
  iot.on(DescribeCertificateCommand, { certificateId: ID }).resolves({
    certificateDescription: { certificateId: ID, certificateArn: ARN, status, ...(notAfter ? { validity: { notBefore: new Date(0), notAfter } } : {}) },
  });
}

beforeEach(() => iot.reset());

describe('issue', () => {
  it('creates an active certificate from the CSR and attaches it to the thing', async () => {
    iot.on(CreateCertificateFromCsrCommand).resolves({ certificateArn: ARN, certificateId: ID, certificatePem: PEM });
    iot.on(AttachThingPrincipalCommand).resolves({});

    await expect(registry.issue(THING, CSR)).resolves.toEqual({ certificateId: ID, certificatePem: PEM });

    expect(iot.commandCalls(CreateCertificateFromCsrCommand).map((call) => call.args[0].input)).toEqual([{ certificateSigningRequest: CSR, setAsActive: true }]);
    expect(iot.commandCalls(AttachThingPrincipalCommand).map((call) => call.args[0].input)).toEqual([{ thingName: THING, principal: ARN }]);
    expect(iot.commandCalls(UpdateCertificateCommand)).toHaveLength(0);
  });

  it('maps a CSR IoT refuses to InvalidCsrError and attaches nothing', async () => {
    iot.on(CreateCertificateFromCsrCommand).rejects(new InvalidRequestException({ message: 'The certificate signing request is not valid', ...meta(400) }));

    const error = await registry.issue(THING, CSR).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidCsrError);
    expect((error as Error).message).toContain('not valid');
    expect(iot.commandCalls(AttachThingPrincipalCommand)).toHaveLength(0);
  });

  it('names the call, the code and what to check for any other IoT error', async () => {
    iot.on(CreateCertificateFromCsrCommand).rejects(new ThrottlingException({ message: 'Rate exceeded', ...meta(429) }));

    const error = await registry.issue(THING, CSR).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(IotRegistryError);
    expect(error).toMatchObject({ operation: 'CreateCertificateFromCsr', code: 'ThrottlingException' });
    expect((error as Error).message).toMatch(/CreateCertificateFromCsr failed: ThrottlingException: Rate exceeded \(IoT is busy/);
    expect((error as Error).cause).toBeInstanceOf(ThrottlingException);
  });

  it('deactivates the new certificate when it cannot be attached, and throws the attach error', async () => {
    iot.on(CreateCertificateFromCsrCommand).resolves({ certificateArn: ARN, certificateId: ID, certificatePem: PEM });
    iot.on(AttachThingPrincipalCommand).rejects(new UnauthorizedException({ message: 'not authorized', ...meta(401) }));
    iot.on(UpdateCertificateCommand).resolves({});

    const error = await registry.issue(THING, CSR).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ name: 'IotRegistryError', operation: 'AttachThingPrincipal', code: 'UnauthorizedException' });
    expect((error as Error).message).toContain('infra/stacks/iot-stack.ts');
    expect(iot.commandCalls(UpdateCertificateCommand).map((call) => call.args[0].input)).toEqual([{ certificateId: ID, newStatus: 'INACTIVE' }]);
  });

  it('refuses an answer without the certificate', async () => {
    iot.on(CreateCertificateFromCsrCommand).resolves({ certificateArn: ARN, certificateId: ID });
    await expect(registry.issue(THING, CSR)).rejects.toMatchObject({ code: 'IncompleteResponse' });
    expect(iot.commandCalls(AttachThingPrincipalCommand)).toHaveLength(0);
  });
});

describe('standing', () => {
  it('is active for an ACTIVE certificate the thing holds, asking IoT by the certificate ARN', async () => {
    described('ACTIVE');
    iot.on(ListPrincipalThingsCommand).resolves({ things: [THING] });

    await expect(registry.standing(THING, ID)).resolves.toBe('active');
    expect(iot.commandCalls(ListPrincipalThingsCommand).map((call) => call.args[0].input)).toEqual([{ principal: ARN, maxResults: 250, nextToken: undefined }]);
  });

  it('is inactive for an attached certificate that is not ACTIVE', async () => {
    described('INACTIVE');
    iot.on(ListPrincipalThingsCommand).resolves({ things: [THING] });
    await expect(registry.standing(THING, ID)).resolves.toBe('inactive');
  });

  it('reads every page of the certificate\'s things', async () => {
    described('ACTIVE');
    iot.on(ListPrincipalThingsCommand, { nextToken: undefined }).resolves({ things: ['other'], nextToken: 'page-2' });
    iot.on(ListPrincipalThingsCommand, { nextToken: 'page-2' }).resolves({ things: [THING] });

    await expect(registry.standing(THING, ID)).resolves.toBe('active');
    expect(iot.commandCalls(ListPrincipalThingsCommand)).toHaveLength(2);
  });

  it('is not-attached for a certificate of another thing, and for one IoT does not know', async () => {
    described('ACTIVE');
    iot.on(ListPrincipalThingsCommand).resolves({ things: ['lekiwi-LK0002'] });
    await expect(registry.standing(THING, ID)).resolves.toBe('not-attached');

    iot.reset();
    iot.on(DescribeCertificateCommand).rejects(new ResourceNotFoundException({ message: 'no such certificate', ...meta(404) }));
    await expect(registry.standing(THING, ID)).resolves.toBe('not-attached');
    expect(iot.commandCalls(ListPrincipalThingsCommand)).toHaveLength(0);
  });

  it('does not take a failed DescribeCertificate for an unknown certificate', async () => {
    iot.on(DescribeCertificateCommand).rejects(new UnauthorizedException({ message: 'denied', ...meta(401) }));
    await expect(registry.standing(THING, ID)).rejects.toMatchObject({ name: 'IotRegistryError', operation: 'DescribeCertificate', code: 'UnauthorizedException' });
  });
});

describe('retire', () => {
  it('sets the certificate INACTIVE, then detaches it from the thing', async () => {
    described('ACTIVE');
    iot.on(UpdateCertificateCommand).resolves({});
    iot.on(DetachThingPrincipalCommand).resolves({});

    await registry.retire(THING, ID);

    expect(iot.commandCalls(UpdateCertificateCommand).map((call) => call.args[0].input)).toEqual([{ certificateId: ID, newStatus: 'INACTIVE' }]);
    expect(iot.commandCalls(DetachThingPrincipalCommand).map((call) => call.args[0].input)).toEqual([{ thingName: THING, principal: ARN }]);
    const order = iot.calls().map((call) => call.args[0].constructor.name);
    expect(order).toEqual(['DescribeCertificateCommand', 'UpdateCertificateCommand', 'DetachThingPrincipalCommand']);
  });

  it('is safe to repeat: an inactive, detached certificate is left as it is', async () => {
    described('INACTIVE');
    iot.on(DetachThingPrincipalCommand).rejects(new ResourceNotFoundException({ message: 'not attached', ...meta(404) }));

    await expect(registry.retire(THING, ID)).resolves.toBeUndefined();
    expect(iot.commandCalls(UpdateCertificateCommand)).toHaveLength(0);
  });

  it('does nothing for a certificate IoT does not know', async () => {
    iot.on(DescribeCertificateCommand).rejects(new ResourceNotFoundException({ message: 'gone', ...meta(404) }));
    await registry.retire(THING, ID);
    expect(iot.calls()).toHaveLength(1);
  });

  it('reports a failed deactivation and does not detach', async () => {
    described('ACTIVE');
    iot.on(UpdateCertificateCommand).rejects(new ThrottlingException({ message: 'slow down', ...meta(429) }));

    await expect(registry.retire(THING, ID)).rejects.toMatchObject({ operation: 'UpdateCertificate', code: 'ThrottlingException' });
    expect(iot.commandCalls(DetachThingPrincipalCommand)).toHaveLength(0);
  });

  it('reports a failed detach other than not-found', async () => {
    described('ACTIVE');
    iot.on(UpdateCertificateCommand).resolves({});
    iot.on(DetachThingPrincipalCommand).rejects(new UnauthorizedException({ message: 'denied', ...meta(401) }));
    await expect(registry.retire(THING, ID)).rejects.toMatchObject({ operation: 'DetachThingPrincipal', code: 'UnauthorizedException' });
  });
});

describe('notAfter', () => {
  it('is the certificate\'s expiry as ISO 8601', async () => {
    described('ACTIVE', new Date('2036-12-01T10:00:00Z'));
    await expect(registry.notAfter(ID)).resolves.toBe('2036-12-01T10:00:00.000Z');
  });

  it('is null without a validity, and for a certificate IoT does not know', async () => {
    described('ACTIVE');
    await expect(registry.notAfter(ID)).resolves.toBeNull();
    iot.reset();
    iot.on(DescribeCertificateCommand).rejects(new ResourceNotFoundException({ message: 'gone', ...meta(404) }));
    await expect(registry.notAfter(ID)).resolves.toBeNull();
  });
});

describe('errors that are not IoT\'s', () => {
  it('pass through unchanged (a network failure is not mislabelled)', async () => {
    const network = new Error('socket hang up');
    iot.on(DescribeCertificateCommand).rejects(network);
    await expect(registry.notAfter(ID)).rejects.toBe(network);
  });
});
