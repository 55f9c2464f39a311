import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { epmdNames, parseNamesReply } from './epmd.js';

describe('epmd NAMES', () => {
  it('parses the registered names', () => {
    const reply = Buffer.concat([
      Buffer.from([0, 0, 0x5e, 0x10]),
      Buffer.from('name dmr-broker-1 at port 24004\nname rabbitmqcli-12-dmr-broker-1 at port 24005\n'),
    ]);
    assert.deepEqual(parseNamesReply(reply), [
      { name: 'dmr-broker-1', port: 24004 },
      { name: 'rabbitmqcli-12-dmr-broker-1', port: 24005 },
    ]);
    assert.deepEqual(parseNamesReply(Buffer.from([0, 0, 0x5e, 0x10])), []);
  });

  it('speaks the NAMES_REQ protocol', async () => {
    let request: Buffer | undefined;
    const server = createServer((socket) => {
      socket.once('data', (data) => {
        request = data;
        socket.end(Buffer.concat([Buffer.from([0, 0, 0x11, 0x11]), Buffer.from('name a at port 1\n')]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    try {
      assert.deepEqual(await epmdNames(address.port), [{ name: 'a', port: 1 }]);
      assert.deepEqual(request, Buffer.from([0, 1, 110]));
    } finally {
      server.close();
    }
  });

  it('fails when nothing listens', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await assert.rejects(epmdNames(address.port));
  });
});
