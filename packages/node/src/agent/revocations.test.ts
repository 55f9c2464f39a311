/** When a new document tells the agent to fetch the CRL at once (revocationsGrew): pure, no CentOps. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeConfig } from '@dmr/contract';
import { revocationsGrew } from './revocations.js';

const NOW = new Date('2026-12-05T12:00:00Z');

function ref(fingerprint: string, notAfter = '2026-12-06T00:00:00.000Z') {
  return { fingerprint, serial: fingerprint.slice(0, 8), notBefore: '2026-12-05T00:00:00.000Z', notAfter };
}

/** Only the fields revocationsGrew reads. */
function config(parts: {
  client?: ReturnType<typeof ref>[];
  peer?: ReturnType<typeof ref>[];
  denied?: string[];
}): NodeConfig {
  return {
    directory: [{ id: 'ria-bot', certificates: parts.client ?? [] }],
    links: [{ peer: 'node-b', peerCertificates: parts.peer ?? [] }],
    denylist: (parts.denied ?? []).map((id) => ({ id, kind: 'client', reason: 'x', since: NOW.toISOString() })),
  } as unknown as NodeConfig;
}

describe('revocationsGrew', () => {
  it('is true when the denylist gains an id', () => {
    assert.equal(revocationsGrew(config({}), config({ denied: ['ria-bot'] }), NOW), true);
    assert.equal(revocationsGrew(config({ denied: ['ria-bot'] }), config({ denied: ['ria-bot'] }), NOW), false);
  });

  it('is true when an unexpired certificate leaves the directory or a link (revoked, superseded, deleted)', () => {
    const before = config({ client: [ref('aa'), ref('bb')], peer: [ref('cc')] });
    assert.equal(revocationsGrew(before, config({ client: [ref('bb')], peer: [ref('cc')] }), NOW), true);
    assert.equal(revocationsGrew(before, config({ client: [ref('aa'), ref('bb')] }), NOW), true);
  });

  it('is false for a renewal (a certificate added) and for a certificate that simply expired', () => {
    const before = config({ client: [ref('aa'), ref('old', '2026-12-05T11:00:00.000Z')] });
    assert.equal(revocationsGrew(before, config({ client: [ref('aa'), ref('new')] }), NOW), false);
    assert.equal(revocationsGrew(undefined, config({ client: [ref('aa')] }), NOW), false);
  });
});
