import {
  DescribeCertificateCommand,
  DetachThingPrincipalCommand,
  IoTClient,
  ResourceNotFoundException,
  ThrottlingException,
  UnauthorizedException,
  UpdateCertificateCommand,
} from '@aws-sdk/client-iot';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { IotCertificateRegistry } from '../../functions/adapters/iot-certificate-registry.js';

/**
 * `revoke` of the IoT certificate registry (the certificate retirer's AWS side, functions/app/retire-certificates.ts):
 * a re-imaged robot's superseded certificate set REVOKED and detached, safely repeated. aws-sdk-client-mock stands
 * in for IoT's control plane, pinning the calls and their parameters.
 */
const THING = 'lekiwi-LK0001';
const ID = 'a'.repeat(64);
const ARN = `arn:aws:iot:eu-west-1:123456789012:cert/${ID}`;
const meta = (httpStatusCode: number) => ({ $metadata: { httpStatusCode } });

const iot = mockClient(IoTClient);
const registry = new IotCertificateRegistry(new IoTClient({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIA', secretAccessKey: 'x' } }));
const described = (status: 'ACTIVE' | 'INACTIVE' | 'REVOKED') =>
  iot.on(DescribeCertificateCommand, { certificateId: ID }).resolves({ certificateDescription: { certificateId: ID, certificateArn: ARN, status } });
const inputs = <T>(command: new (input: T) => unknown) => iot.commandCalls(command as never).map((call) => call.args[0].input);

beforeEach(() => iot.reset());

describe('revoke', () => {
  it.each(['ACTIVE', 'INACTIVE'] as const)('sets an %s certificate REVOKED, then detaches it from the thing', async (status) => {
    described(status);
    iot.on(UpdateCertificateCommand).resolves({});
    iot.on(DetachThingPrincipalCommand).resolves({});

    await registry.revoke(THING, ID);

    expect(inputs(UpdateCertificateCommand)).toEqual([{ certificateId: ID, newStatus: 'REVOKED' }]);
    expect(inputs(DetachThingPrincipalCommand)).toEqual([{ thingName: THING, principal: ARN }]);
  });

  it('leaves an already revoked certificate’s status alone but still detaches it (a repeat after a failed detach)', async () => {
    described('REVOKED');
    iot.on(DetachThingPrincipalCommand).resolves({});

    await registry.revoke(THING, ID);

    expect(iot.commandCalls(UpdateCertificateCommand)).toHaveLength(0);
    expect(inputs(DetachThingPrincipalCommand)).toEqual([{ thingName: THING, principal: ARN }]);
  });

  it('is done for a certificate IoT does not know, and for one already detached', async () => {
    iot.on(DescribeCertificateCommand).rejects(new ResourceNotFoundException({ message: 'no such certificate', ...meta(404) }));
    await expect(registry.revoke(THING, ID)).resolves.toBeUndefined();
    expect(iot.commandCalls(UpdateCertificateCommand)).toHaveLength(0);
    expect(iot.commandCalls(DetachThingPrincipalCommand)).toHaveLength(0);

    iot.reset();
    described('ACTIVE');
    iot.on(UpdateCertificateCommand).resolves({});
    iot.on(DetachThingPrincipalCommand).rejects(new ResourceNotFoundException({ message: 'not attached', ...meta(404) }));
    await expect(registry.revoke(THING, ID)).resolves.toBeUndefined();
    expect(inputs(UpdateCertificateCommand)).toEqual([{ certificateId: ID, newStatus: 'REVOKED' }]);
  });

  it('throws an IotRegistryError naming the call for IoT’s other errors (the stream record comes again)', async () => {
    described('ACTIVE');
    iot.on(UpdateCertificateCommand).rejects(new ThrottlingException({ message: 'Rate exceeded', ...meta(429) }));
    await expect(registry.revoke(THING, ID)).rejects.toMatchObject({ name: 'IotRegistryError', operation: 'UpdateCertificate', code: 'ThrottlingException' });
    expect(iot.commandCalls(DetachThingPrincipalCommand)).toHaveLength(0);

    iot.reset();
    described('REVOKED');
    iot.on(DetachThingPrincipalCommand).rejects(new UnauthorizedException({ message: 'not authorized', ...meta(401) }));
    await expect(registry.revoke(THING, ID)).rejects.toMatchObject({ operation: 'DetachThingPrincipal', code: 'UnauthorizedException' });
  });
});
