import { PublishCommand, type IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { topics } from '../../schemas/topics.js';
import type { RobotCommandChannel } from '../app/ports.js';

/**
 * Commands to robots through AWS IoT Core's data plane `Publish` (HTTPS, SigV4): one QoS 1 message on
 * `cmd/heartbeat/<robotId>/<request>`, JSON. QoS 1 here means IoT Core acknowledged it; with the agents' clean
 * sessions, a robot that is not connected right now never sees it, which is what a "report now" wants.
 * The client's endpoint is the account's ATS data endpoint (IOT_DATA_ENDPOINT in AWS, AWS_ENDPOINT_URL_IOT_DATA_PLANE
 * for the local cloud's stand-in).
 */
export class IotDataPublisher implements RobotCommandChannel {
  private readonly encoder = new TextEncoder();

  constructor(private readonly client: IoTDataPlaneClient) {}

  async send(robotId: string, request: string, payload: unknown): Promise<void> {
    await this.client.send(
      new PublishCommand({
        topic: topics.command(robotId, request),
        qos: 1,
        payload: this.encoder.encode(JSON.stringify(payload)),
        contentType: 'application/json',
      }),
    );
  }
}
