import { ReportNowCommand, TelemetrySample, type ReportNowReply, type TelemetryMessage } from '../schemas/device.js';
import { ROBOT_REQUESTS, TOPIC_RULES, topics } from '../schemas/topics.js';
import { firstProblem } from './command-payload.js';
import type { Logger } from './adapters/json-log.js';
import type { Link } from './adapters/mqtt-link.js';
import type { AgentClock, AgentRuntimeConfig, ReportNowResult, TelemetryReader } from './agent.js';
import { decideTelemetrySend, type TelemetryDecision } from './core/telemetry-policy.js';

/**
 * Telemetry: a sample every `sampleIntervalMs`, sent (QoS 0) when the policy says so, and only while the link is up;
 * and the answer to the `report-now` command (a sample at once, then `…/report-now/reply`).
 *
 * INVARIANTS
 * - Samples run one at a time (timer, connection, report-now), so two can never both be "first".
 * - Offline, nothing is sent and nothing kept: the next connection starts with a fresh reading.
 * - A report-now reply is published only once its sample went out, and carries that sample's `sentAt`.
 */
export class TelemetryReporter {
  readonly topic: string;
  online = false;
  private running = false;
  private lastSent: { sample: TelemetrySample; at: number } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: {
      readonly config: AgentRuntimeConfig;
      readonly link: Link;
      readonly reader: TelemetryReader;
      readonly clock: AgentClock;
      readonly log: Logger;
    },
  ) {
    const { config } = deps;
    this.topic = config.basicIngest
      ? topics.basicIngest(config.telemetryRule ?? TOPIC_RULES.telemetry.name, topics.telemetry(config.thingName))
      : topics.telemetry(config.thingName);
  }

  start(): void {
    this.running = true;
    void this.sampleOnce(false);
    this.schedule();
  }

  /** A fresh reading right away: the policy sends it if it is the first or has news, else holds it. */
  linkUp(): void {
    this.online = true;
    void this.sampleOnce(false);
  }

  linkDown(): void {
    this.online = false;
  }

  stop(): void {
    this.running = false;
    this.online = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  idle(): Promise<unknown> {
    return this.sampling;
  }

  /** `requestId`: the report-now this sample answers; it goes with the sample, so the live feed can name it. */
  sampleOnce(requested: boolean, requestId?: string): Promise<ReportNowResult> {
    const run = this.sampling.then(() => this.send(requested, requestId));
    this.sampling = run.catch(() => undefined);
    return run;
  }

  /** The `report-now` command's JSON body: a sample now, then the reply. Never rejects. */
  async answerReportNow(topic: string, body: unknown): Promise<void> {
    const { link, log, config } = this.deps;
    const command = ReportNowCommand.safeParse(body);
    if (!command.success) {
      log.warn('malformed command ignored', { topic, ...firstProblem(command.error) });
      return;
    }
    const { requestId } = command.data;
    const result = await this.sampleOnce(true, requestId);
    if (!result.sent || result.sentAt === undefined) {
      log.warn('report-now: no sample could be sent', { requestId });
      return;
    }
    try {
      const reply: ReportNowReply = { requestId, sentAt: result.sentAt };
      await link.publish(topics.commandReply(config.thingName, ROBOT_REQUESTS.reportNow), JSON.stringify(reply), 1);
    } catch (error) {
      log.warn('report-now reply failed', { requestId, error });
    }
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sampleOnce(false).finally(() => this.schedule());
    }, this.deps.config.telemetry.sampleIntervalMs);
  }

  private async send(requested: boolean, requestId?: string): Promise<ReportNowResult> {
    const { reader, link, clock, log, config } = this.deps;
    if (!this.running) return { sent: false };
    let reading: TelemetrySample;
    try {
      reading = await reader.read();
    } catch (error) {
      log.warn('telemetry read failed; skipped this sample', { error });
      return { sent: false };
    }
    const checked = TelemetrySample.safeParse(reading);
    if (!checked.success) {
      const problem = checked.error.issues[0];
      log.error('telemetry sample invalid; not sent', { field: problem?.path.join('.'), problem: problem?.message });
      return { sent: false };
    }
    // Offline: nothing to decide. The sample would be stale by the time the link is back, so it is not kept.
    if (!this.online || !this.running) return { sent: false };
    const now = clock.now();
    let decision: TelemetryDecision;
    try {
      decision = decideTelemetrySend({ lastSent: this.lastSent, reading: checked.data, now, requested }, config.telemetry.policy);
    } catch (error) {
      log.error('telemetry policy failed', { error });
      return { sent: false };
    }
    if (!decision.send) {
      log.debug('telemetry held', { reason: decision.reason, changed: decision.changed });
      return { sent: false };
    }
    try {
      const message: TelemetryMessage = requestId === undefined ? checked.data : { ...checked.data, requestId };
      await link.publish(this.topic, JSON.stringify(message), 0);
    } catch (error) {
      log.warn('telemetry publish failed', { error, reason: decision.reason });
      return { sent: false };
    }
    this.lastSent = { sample: checked.data, at: now };
    log.debug('telemetry sent', { reason: decision.reason, changed: decision.changed });
    return { sent: true, sentAt: new Date(now).toISOString() };
  }
}
