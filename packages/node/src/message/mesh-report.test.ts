import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type CheckResult, type SignableMessage } from '@dmr/contract';
import { checkMeshParties, mayReportOn, meshReport, type MeshMessageKind } from './mesh-report.js';
import {
  SENDER,
  impostor,
  originated,
  publishedBy,
  testMesh,
  withHeaders,
  type TestMesh,
} from './mesh-test-support.js';
import { testMessage } from './test-support.js';

const AT = new Date();
const REFUSED = '00000000-0000-4000-8000-00000000000a';
const DIRECTORY = new Map([
  [SENDER, { homeNode: 'n0' }],
  ['police-bot', { homeNode: 'n2' }],
]);

function assertRefused(result: CheckResult<MeshMessageKind>, reason: string, check: string): void {
  assert.ok(!result.ok, `expected ${reason} (${check})`);
  assert.equal(result.reason, reason, result.detail);
  assert.match(result.detail, new RegExp(`\\(${check}\\)$`));
}

function typed(type: string, recipient = 'police-bot'): SignableMessage {
  return testMessage({ type, headers: { 'dmr-recipient': recipient, 'dmr-version': 1 } });
}

describe('reports across the mesh', () => {
  let mesh: TestMesh;
  before(async () => {
    mesh = await testMesh(['n0', 'n1', 'n2']);
  });
  after(() => mesh.cleanup());

  it('a node sends only reports, only in its own name, only to a client', () => {
    const report = typed('dmr.DeliveryReport', SENDER);
    assert.deepEqual(checkMeshParties(report, { sender: 'n2', origin: 'n2' }, DIRECTORY), {
      ok: true,
      message: 'report',
    });
    assertRefused(
      checkMeshParties(report, { sender: 'police-bot', origin: 'n2' }, DIRECTORY),
      'REPORT_INVALID',
      'sender',
    );
    for (const recipient of ['n0', 'nobody', 'NOT-AN-ID']) {
      const misaddressed = typed('dmr.DeliveryReport', recipient);
      assertRefused(
        checkMeshParties(misaddressed, { sender: 'n2', origin: 'n2' }, DIRECTORY),
        'REPORT_INVALID',
        'recipient',
      );
    }
    assertRefused(
      checkMeshParties(typed('ChatMessage'), { sender: 'n0', origin: 'n0' }, DIRECTORY),
      'REPORT_INVALID',
      'node-sender',
    );
  });

  it('a client message comes from a client homed at its origin, and never with a dmr. type', () => {
    assert.deepEqual(checkMeshParties(typed('ChatMessage'), { sender: SENDER, origin: 'n0' }, DIRECTORY), {
      ok: true,
      message: 'message',
    });
    assertRefused(
      checkMeshParties(typed('ChatMessage'), { sender: SENDER, origin: 'n1' }, DIRECTORY),
      'SENDER_UNKNOWN',
      'home',
    );
    assertRefused(
      checkMeshParties(typed('ChatMessage'), { sender: 'ghost-bot', origin: 'n0' }, DIRECTORY),
      'SENDER_UNKNOWN',
      'home',
    );
    assertRefused(
      checkMeshParties(typed('dmr.Other'), { sender: SENDER, origin: 'n0' }, DIRECTORY),
      'TYPE_INVALID',
      'type',
    );
  });

  it('never a report about a report', () => {
    assert.equal(mayReportOn('dmr.DeliveryReport'), false);
    assert.equal(mayReportOn('ChatMessage'), true);
    assert.equal(mayReportOn(undefined), true);
  });

  it('the report metadata is what the origin signer signs, and it travels back verified', async () => {
    const body = Buffer.from(JSON.stringify({ messageId: REFUSED, status: 'rejected', reason: 'POLICY_DENIED' }));
    const report = meshReport({
      to: SENDER,
      refusedId: REFUSED,
      body,
      now: AT,
      messageId: '00000000-0000-4000-8000-00000000000b',
    });
    assert.deepEqual(report.properties, {
      messageId: '00000000-0000-4000-8000-00000000000b',
      type: 'dmr.DeliveryReport',
      timestamp: Math.floor(AT.getTime() / 1000),
      contentType: 'application/json',
      correlationId: REFUSED,
      headers: { 'dmr-recipient': SENDER, 'dmr-version': 1 },
    });
    assert.deepEqual(report.content, body);
    assert.equal(meshReport({ to: SENDER, refusedId: null, body, now: AT }).properties.correlationId, undefined);

    // n2 refused a message from tax-bot@n0 that came through n1: the report goes back n2 → n1 → n0.
    const refusing = mesh.node('n2');
    const sent = originated(refusing, 'n1', AT, report, 'n2');
    const atN1 = await mesh.verifier('n1').verify(sent, AT);
    assert.ok(atN1.ok, atN1.ok ? '' : atN1.detail);
    const forwarded = publishedBy(sent, mesh.node('n1'), mesh.node('n1').signer.append(atN1.message, 'n0', AT));
    const atN0 = await mesh.verifier('n0').verify(forwarded, AT);
    assert.ok(atN0.ok, atN0.ok ? '' : atN0.detail);
    assert.deepEqual([atN0.message.sender, atN0.message.origin], ['n2', 'n2']);
    assert.deepEqual(checkMeshParties(forwarded, atN0.message, DIRECTORY), { ok: true, message: 'report' });
  });

  it('a transit node cannot report in another node’s name, nor turn a message into a report', async () => {
    const body = Buffer.from('{}');
    const report = meshReport({ to: SENDER, refusedId: REFUSED, body, now: AT });
    // n1 signs a report claiming to be n2 with its own key: the origin signature is not n2's.
    const n1 = mesh.node('n1');
    const forged = originated({ ...n1, signer: impostor('n2', n1) }, 'n0', AT, report, 'n2');
    assert.equal(forged.properties.userId, n1.spiffe);
    const refused = await mesh.verifier('n0').verify(forged, AT);
    assert.ok(!refused.ok);
    assert.equal(refused.reason, 'HOP_SIGNATURE_INVALID');
    assert.match(refused.detail, /\(signer\)$/);
    // Relabelling a client's message as a report changes a signed field.
    const message = originated(mesh.node('n0'), 'n1', AT);
    const relabelled = withHeaders(
      { ...message, properties: { ...message.properties, type: 'dmr.DeliveryReport' } },
      {},
    );
    const atN1 = await mesh.verifier('n1').verify(relabelled, AT);
    assert.ok(!atN1.ok);
    assert.match(atN1.detail, /\(signature\)$/);
  });
});
