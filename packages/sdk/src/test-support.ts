/** Shared by the SDK's integration tests (not exported from the package). */
import assert from 'node:assert/strict';
import { waitFor, type NodeFixture } from '@dmr/testkit';
import type { ConnectOptions, ReceivedMessage } from './client.js';

/**
 * How client `id` reaches the fixture's broker: its AMQPS port on loopback, the name its certificate
 * carries (localhost), the node's id, and a short back-off so reconnects in a test take a moment, not a
 * minute. The caller adds the certificate (`tls`) and whatever the test is about.
 */
export function fixtureConnection(node: NodeFixture, id: string): Omit<ConnectOptions, 'tls'> {
  return {
    url: `amqps://127.0.0.1:${node.harness.node(0).amqpsPort}`,
    servername: 'localhost',
    node: node.nodeId,
    id,
    backoff: { initialMs: 100, maxMs: 1_000 },
  };
}

/** Waits for the one message a test sent with `protect`, and checks it arrived protected, whole and unchanged. */
export async function receivedProtected(handled: readonly ReceivedMessage[], id: string, body: unknown): Promise<void> {
  await waitFor('the protected message', () => handled.length === 1);
  const [message] = handled;
  assert.ok(message);
  assert.equal(message.id, id);
  assert.equal(message.protected, true);
  assert.equal(message.contentType, 'application/json');
  assert.deepEqual(JSON.parse(message.body.toString('utf8')), body);
}
