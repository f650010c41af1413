import { describe, expect, it } from 'vitest';
import { handleArtifactUrlRequest, type ArtifactUrlDependencies } from '../../../functions/app/deployments/artifact-urls.js';
import { sha256Hex } from '../../../functions/app/deployments/release-manifest.js';
import { ArtifactUrlReply, MAX_OBJECTS_PER_URL_REQUEST } from '../../../schemas/deployments.js';

/** The artifact-urls use case on fakes: what it answers, to whom, and what it refuses. */
const NOW = new Date('2026-12-01T10:00:00.500Z');

function harness(stored: Record<string, number>, urlLength = 200) {
  const sent: { robotId: string; request: string; payload: unknown }[] = [];
  const logs: string[] = [];
  const presigned: { sha: string; ttl: number }[] = [];
  const deps: ArtifactUrlDependencies = {
    store: {
      objectSizes: async (shas) => new Map(shas.filter((s) => s in stored).map((s) => [s, stored[s]!])),
      presignObject: async (sha, ttl) => {
        presigned.push({ sha, ttl });
        return `https://bucket.example/objects/${sha}?sig=${'x'.repeat(urlLength)}`;
      },
    },
    replies: { send: async (robotId, request, payload) => void sent.push({ robotId, request, payload }) },
    now: () => NOW,
    log: (_level, message) => void logs.push(message),
  };
  return { deps, sent, logs, presigned };
}

const a = sha256Hex('a');
const b = sha256Hex('b');

describe('handleArtifactUrlRequest', () => {
  it("answers the publishing robot with each stored object's URL and size once, the rest as missing", async () => {
    const { deps, sent, presigned } = harness({ [a]: 10 });
    const outcome = await handleArtifactUrlRequest(deps, { thingName: 'lekiwi-01', topic: 'dt/heartbeat/lekiwi-01/artifacts/request', requestId: 'r-000001', objects: [a, b, a] });
    expect(outcome).toEqual({ kind: 'answered', robotId: 'lekiwi-01', requestId: 'r-000001', urls: 1, missing: 1 });
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ robotId: 'lekiwi-01', request: 'artifact-urls' });
    const reply = ArtifactUrlReply.parse(sent[0]!.payload);
    expect(reply).toEqual({
      requestId: 'r-000001',
      urls: [{ sha256: a, url: expect.stringContaining(a), size: 10 }],
      missing: [b],
      expiresAt: '2026-12-01T10:15:00.000Z',
    });
    expect(presigned).toEqual([{ sha: a, ttl: 900 }]);
  });

  it('rejects a malformed request naming the problem, and only logs one it cannot answer', async () => {
    const { deps, sent, logs } = harness({});
    const tooMany = Array.from({ length: MAX_OBJECTS_PER_URL_REQUEST + 1 }, (_, i) => sha256Hex(String(i)));
    await expect(handleArtifactUrlRequest(deps, { thingName: 'lekiwi-01', requestId: 'r-000002', objects: tooMany })).resolves.toMatchObject({
      kind: 'rejected',
      reason: 'INVALID_REQUEST',
      message: expect.stringContaining('objects'),
    });
    await expect(handleArtifactUrlRequest(deps, { thingName: 'lekiwi-01', requestId: 'r-000003', objects: [a], extra: 1 })).resolves.toMatchObject({ kind: 'rejected' });
    expect(sent.map((s) => (s.payload as { requestId: string }).requestId)).toEqual(['r-000002', 'r-000003']);

    await expect(handleArtifactUrlRequest(deps, { thingName: 'lekiwi-01', requestId: 'x', objects: [a] })).resolves.toMatchObject({ kind: 'dropped' });
    await expect(handleArtifactUrlRequest(deps, { requestId: 'r-000004', objects: [a] })).resolves.toMatchObject({ kind: 'dropped', why: 'the rule gave no valid thing name' });
    expect(sent).toHaveLength(2);
    expect(logs.filter((l) => l.includes('dropped'))).toHaveLength(2);
  });

  it("keeps the reply within IoT's 128 KB: the most objects allowed with long URLs fit; longer ones are refused, not sent", async () => {
    const shas = Array.from({ length: MAX_OBJECTS_PER_URL_REQUEST }, (_, i) => sha256Hex(`o${i}`));
    const stored = Object.fromEntries(shas.map((s) => [s, 1]));
    // An S3 URL signed with a Lambda role's session token is about 2 KB.
    const fits = harness(stored, 2_000);
    await expect(handleArtifactUrlRequest(fits.deps, { thingName: 'lekiwi-01', requestId: 'r-000005', objects: shas })).resolves.toMatchObject({ kind: 'answered', urls: shas.length });
    const tooLong = harness(stored, 5_000);
    await expect(handleArtifactUrlRequest(tooLong.deps, { thingName: 'lekiwi-01', requestId: 'r-000006', objects: shas })).resolves.toMatchObject({ kind: 'rejected', reason: 'REPLY_TOO_LARGE' });
    expect(tooLong.sent.map((s) => s.payload)).toEqual([{ requestId: 'r-000006', rejected: { reason: 'REPLY_TOO_LARGE', message: expect.stringContaining('ask for fewer') } }]);
  });
});
