import type { EventPage, EventView, FleetMetrics, RobotView } from '../../../schemas/index.js';
import type { ApiClient } from '../../../dashboard/src/contracts.js';
import { ApiRequestError } from '../../../dashboard/src/api/client.js';

interface Pending<T> {
  readonly args: readonly unknown[];
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** An ApiClient whose reads wait until the test answers them (calls are recorded per method). */
export class FakeApi implements ApiClient {
  readonly robotsCalls: Pending<RobotView[]>[] = [];
  readonly metricsCalls: Pending<FleetMetrics>[] = [];
  readonly listEventsCalls: Pending<EventPage>[] = [];
  readonly eventsAfterCalls: Pending<EventView[]>[] = [];

  #wait<T>(list: Pending<T>[], args: unknown[]): Promise<T> {
    return new Promise<T>((resolve, reject) => list.push({ args, resolve, reject }));
  }

  listRobots = (): Promise<RobotView[]> => this.#wait(this.robotsCalls, []);
  metrics = (): Promise<FleetMetrics> => this.#wait(this.metricsCalls, []);
  listEvents = (robotId: string, options: { cursor?: string; limit?: number } = {}): Promise<EventPage> =>
    this.#wait(this.listEventsCalls, [robotId, options.cursor, options.limit]);
  eventsAfter = (robotId: string, afterSeq: number): Promise<EventView[]> => this.#wait(this.eventsAfterCalls, [robotId, afterSeq]);

  getRobot = (): Promise<RobotView> => Promise.reject(new Error('the store must not fetch single robots'));
  telemetry = () => Promise.reject(new Error('not used'));
  markFailed = () => Promise.reject(new Error('not used'));
  recover = () => Promise.reject(new Error('not used'));
  discover = () => Promise.reject(new Error('not used'));
  listDeployments = () => Promise.reject(new Error('not used'));
  getDeployment = () => Promise.reject(new Error('not used'));
  createDeployment = () => Promise.reject(new Error('not used'));
  deploymentAction = () => Promise.reject(new Error('not used'));
}

export const badRequest = () => new ApiRequestError(400, 'INVALID_REQUEST', 'Invalid query: after is not a known parameter');
