import { marshall } from '@aws-sdk/util-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { DeploymentChanged, DeploymentStrategy, WILDCARD } from '../../schemas/index.js';
import { DEPLOYMENT_HEAD_RECORD_PATTERNS, matchesAnyFilter } from '../../schemas/stream-filters.js';
import { deploymentChangedOf, deploymentChangesIn } from '../../functions/app/live/deployment-changes.js';
import { broadcastDeploymentChanges } from '../../functions/adapters/stream-consumers.js';
import { readDeploymentImage } from '../../functions/adapters/deployment-stream-items.js';
import type { ConnectionStore, LivePush, Watcher } from '../../functions/app/live/ports.js';
import { toDeploymentSummary } from '../../functions/app/deployments/deployment-view.js';
import { startDeployment, type DeploymentHead } from '../../functions/domain/deployment.js';

/** A deployments table head image → DeploymentChanged, and the consumer's ordering, dedupe and failure rules. */

const ID = 'dep-01JDZ5N8X2K7QF3M9V6T4B1C0A';
const OTHER = 'dep-01JDZ5N8X2K7QF3M9V6T4B1C0B';

function head(deploymentId = ID): DeploymentHead {
  return startDeployment({
    deploymentId,
    kind: 'deploy',
    parentDeploymentId: null,
    release: { version: '1.4.0', manifestSha256: 'b'.repeat(64), fileCount: 3, totalBytes: 300 },
    strategy: DeploymentStrategy.parse({ canary: 2, batchSize: 5 }),
    targets: { robotIds: ['lekiwi-A0001', 'lekiwi-A0002', 'lekiwi-A0003'] },
    note: null,
    createdBy: 'eve',
    at: '2026-12-01T10:00:00.000Z',
    batchSizes: [2, 1],
    canary: true,
    held: 1,
  }).head;
}

const headImage = (revision: number, h: DeploymentHead = head()) => ({ pk: `deployment#${h.deploymentId}`, sk: 'head', head: h, revision });

let sequence = 100;
function record(image: Record<string, unknown>): DynamoDBRecord {
  sequence += 1;
  return {
    eventName: 'MODIFY',
    dynamodb: { SequenceNumber: String(sequence), NewImage: marshall(image, { removeUndefinedValues: true }) as never, StreamViewType: 'NEW_IMAGE' },
  };
}

describe('deploymentChangedOf', () => {
  it('turns a head image into DeploymentChanged with the summary’s state, reason, counts and batches, and the revision', () => {
    const h = head();
    const message = deploymentChangedOf(headImage(7, h));
    const summary = toDeploymentSummary(h);
    expect(DeploymentChanged.parse(message)).toEqual({
      type: 'DeploymentChanged',
      deploymentId: ID,
      state: 'running',
      reason: null,
      counts: summary.counts,
      batches: summary.batches,
      updatedAt: '2026-12-01T10:00:00.000Z',
      revision: 7,
    });
    expect(message?.counts).toMatchObject({ targeted: 4, held: 1, inProgress: 2, pending: 1 });
    expect(message?.batches.map((b) => [b.kind, b.state])).toEqual([['canary', 'running'], ['rolling', 'pending']]);
    // A summary: no robots, no strategy.
    expect(Object.keys(message ?? {})).not.toContain('robots');
  });

  it.each([
    ['a robot item', { pk: `deployment#${ID}`, sk: 'robot#lekiwi-A0001', state: 'queued' }],
    ['an event item', { pk: `deployment#${ID}`, sk: 'event#0000000001', event: {} }],
    ['the list item', { pk: 'deployments', sk: `2026-12-01T10:00:00.000Z#${ID}`, deploymentId: ID }],
    ['an idempotency key', { pk: 'idempotency#eve', sk: 'k', deploymentId: ID }],
    ['a head without a revision', { pk: `deployment#${ID}`, sk: 'head', head: head() }],
    ['a head with revision 0', { pk: `deployment#${ID}`, sk: 'head', head: head(), revision: 0 }],
  ])('makes nothing of %s', (_, image) => {
    expect(deploymentChangedOf(image)).toBeNull();
  });

  it('is what the mapping’s filter lets through: head writes only', () => {
    expect(matchesAnyFilter(record(headImage(1)), DEPLOYMENT_HEAD_RECORD_PATTERNS)).toBe(true);
    expect(matchesAnyFilter(record({ pk: `deployment#${ID}`, sk: 'robot#lekiwi-A0001', state: 'queued' }), DEPLOYMENT_HEAD_RECORD_PATTERNS)).toBe(false);
    expect(matchesAnyFilter(record({ pk: `deployment#${ID}`, sk: 'marker#x' }), DEPLOYMENT_HEAD_RECORD_PATTERNS)).toBe(false);
  });
});

describe('deploymentChangesIn', () => {
  it('keeps each deployment’s revisions in order, drops a repeated revision and what is not a head', () => {
    const records = [
      record(headImage(3)),
      record(headImage(2, head(OTHER))),
      record(headImage(2)), // arrived after 3 (records of one batch need not be in key order across items)
      record(headImage(3)), // a repeat
      record({ pk: `deployment#${ID}`, sk: 'robot#lekiwi-A0001', state: 'queued' }),
      { eventName: 'REMOVE', dynamodb: { SequenceNumber: '1' } } as DynamoDBRecord,
    ];
    expect(deploymentChangesIn(records, readDeploymentImage).map(({ message }) => [message.deploymentId, message.revision])).toEqual([
      [ID, 2],
      [ID, 3],
      [OTHER, 2],
    ]);
  });

  it('skips an unreadable head instead of failing the batch', () => {
    const broken = record({ pk: `deployment#${ID}`, sk: 'head', head: { deploymentId: ID }, revision: 4 });
    expect(deploymentChangesIn([broken, record(headImage(5))], readDeploymentImage).map(({ message }) => message.revision)).toEqual([5]);
  });
});

class FakeConnections implements Pick<ConnectionStore, 'watchersOf' | 'remove'> {
  lookups: string[] = [];
  removed: string[] = [];
  constructor(private readonly watchers: Record<string, Watcher[]>, private readonly failing = false) {}
  async watchersOf(subscription: string): Promise<Watcher[]> {
    this.lookups.push(subscription);
    if (this.failing) throw new Error('throttled');
    return this.watchers[subscription] ?? [];
  }
  async remove(connectionId: string): Promise<void> {
    this.removed.push(connectionId);
  }
}

function notifier(gone: readonly string[] = []) {
  const sent: Array<[string, LivePush]> = [];
  return {
    sent,
    send: async (connectionId: string, message: LivePush) => {
      if (gone.includes(connectionId)) return 'gone' as const;
      sent.push([connectionId, message]);
      return 'sent' as const;
    },
  };
}

describe('broadcastDeploymentChanges', () => {
  it('pushes every change, in revision order, to each connection subscribed to `*` and to no one else', async () => {
    const connections = new FakeConnections({ [WILDCARD]: [{ connectionId: 'c1', telemetry: '1s' }, { connectionId: 'c2', telemetry: 'raw' }], 'lekiwi-A0001': [{ connectionId: 'c3', telemetry: 'raw' }] });
    const push = notifier();
    const result = await broadcastDeploymentChanges([record(headImage(2)), record(headImage(1))], { connections: connections as unknown as ConnectionStore, notifier: push, concurrency: 4 });
    expect(result).toEqual({ batchItemFailures: [] });
    expect(connections.lookups).toEqual([WILDCARD]);
    const byConnection = (id: string) => push.sent.filter(([c]) => c === id).map(([, m]) => (m as DeploymentChanged).revision);
    expect(byConnection('c1')).toEqual([1, 2]);
    expect(byConnection('c2')).toEqual([1, 2]);
    expect(byConnection('c3')).toEqual([]);
  });

  it('looks nobody up for a batch without a head', async () => {
    const connections = new FakeConnections({}, true);
    const result = await broadcastDeploymentChanges([record({ pk: `deployment#${ID}`, sk: 'robot#lekiwi-A0001' })], { connections: connections as unknown as ConnectionStore, notifier: notifier(), concurrency: 4 });
    expect(result).toEqual({ batchItemFailures: [] });
    expect(connections.lookups).toEqual([]);
  });

  it('fails the batch from its first head when the subscribers cannot be looked up, so the mapping retries it', async () => {
    const connections = new FakeConnections({}, true);
    const robot = record({ pk: `deployment#${ID}`, sk: 'robot#lekiwi-A0001' });
    const first = record(headImage(1));
    const result = await broadcastDeploymentChanges([robot, first, record(headImage(2))], { connections: connections as unknown as ConnectionStore, notifier: notifier(), concurrency: 4 });
    expect(result).toEqual({ batchItemFailures: [{ itemIdentifier: first.dynamodb?.SequenceNumber }] });
  });

  it('forgets a gone connection and still serves the others', async () => {
    const connections = new FakeConnections({ [WILDCARD]: [{ connectionId: 'gone', telemetry: 'raw' }, { connectionId: 'c1', telemetry: 'raw' }] });
    const push = notifier(['gone']);
    await broadcastDeploymentChanges([record(headImage(1)), record(headImage(2))], { connections: connections as unknown as ConnectionStore, notifier: push, concurrency: 1 });
    expect(connections.removed).toEqual(['gone']);
    expect(push.sent.map(([c]) => c)).toEqual(['c1', 'c1']);
  });
});
