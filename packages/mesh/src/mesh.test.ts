import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { TerminalProgress } from './progress.js';
import { DEMO_CLIENTS, registryDocuments } from './registry.js';

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

describe('mesh progress', () => {
  it('prints plain lines when the output is not a terminal: start, ✓ with detail and duration, ✗ with the first line', () => {
    const out = capture();
    const steps: string[] = [];
    const progress = new TerminalProgress({
      stream: out.stream,
      tty: false,
      onStepDone: (step) => steps.push(step.name),
    });
    const step = progress.step('CentOps');
    step.update('serve');
    step.done('https://127.0.0.1:8443');
    progress.line('a line');
    progress.step('broker').fail(new Error('did not boot\nlog excerpt'));
    const lines = out.text().split('\n');
    assert.equal(lines[0], '… CentOps');
    assert.match(lines[1] ?? '', /^✓ CentOps {2}https:\/\/127\.0\.0\.1:8443 {2}\(\d+ ms\)$/);
    assert.equal(lines[2], 'a line');
    assert.equal(lines[4], '✗ broker: did not boot');
    assert.ok(!out.text().includes('\x1b['), 'no terminal control sequences on a pipe');
    assert.deepEqual(steps, ['CentOps']);
  });

  it('redraws in place on a terminal and ends each step on its own line', () => {
    const out = capture();
    const progress = new TerminalProgress({ stream: out.stream, tty: true });
    progress.step('RabbitMQ').done();
    const text = out.text();
    assert.ok(text.startsWith('\r\u001b[K'), JSON.stringify(text));
    assert.match(text.slice(text.lastIndexOf('\u001b[K') + 3), /^✓ RabbitMQ {2}\(\d+ ms\)\n$/);
  });
});

describe('mesh registry', () => {
  it('homes both demo clients on node-1 in their own organisations, node certificate valid for localhost', () => {
    const documents = registryDocuments({ amqpsPort: 25000, managementPort: 25001 });
    const clients = documents.filter((document) => document.kind === 'Client').map((document) => document.spec);
    assert.deepEqual(
      clients.map((client) => [client.id, client.organisation, client.homeNode]),
      DEMO_CLIENTS.map((client) => [client.id, client.organisation, 'node-1']),
    );
    const node = documents.find((document) => document.kind === 'Node')?.spec;
    assert.equal(node?.amqpsEndpoint, 'amqps://localhost:25000');
    assert.deepEqual((node?.certificateProfile as { extraDns: string[] }).extraDns, ['localhost']);
  });
});
