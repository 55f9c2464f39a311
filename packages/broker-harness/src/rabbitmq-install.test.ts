import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { compareVersions, locateRabbitmq } from './rabbitmq-install.js';
import { makeTempDir, skipUnless } from './testing.js';

async function fakeServer(lib: string, version: string): Promise<void> {
  const sbin = join(lib, `rabbitmq_server-${version}`, 'sbin');
  await mkdir(sbin, { recursive: true });
  for (const script of ['rabbitmq-server', 'rabbitmqctl']) {
    await writeFile(join(sbin, script), '#!/bin/sh\n');
    await chmod(join(sbin, script), 0o755);
  }
}

describe('locating RabbitMQ', () => {
  it('orders versions numerically', () => {
    assert.ok(compareVersions('3.10.8', '3.9.29') > 0);
    assert.ok(compareVersions('3.10.8', '3.10.8') === 0);
    assert.ok(compareVersions('3.10', '3.10.1') < 0);
  });

  it('picks the newest rabbitmq_server-* directory', async () => {
    const temp = await makeTempDir('rabbit-lib');
    try {
      const lib = join(temp.path, 'lib');
      const bin = join(temp.path, 'erlang-bin');
      await mkdir(bin);
      await writeFile(join(bin, 'epmd'), '#!/bin/sh\n');
      await chmod(join(bin, 'epmd'), 0o755);
      await fakeServer(lib, '3.9.29');
      await fakeServer(lib, '3.10.8');
      const found = locateRabbitmq(lib, bin);
      assert.equal(found.version, '3.10.8');
      assert.equal(found.ctl, join(lib, 'rabbitmq_server-3.10.8', 'sbin', 'rabbitmqctl'));
    } finally {
      await temp.remove();
    }
  });

  it('says how to install it when it is missing', () => {
    assert.throws(
      () => locateRabbitmq('/nonexistent/rabbitmq/lib'),
      (error: unknown) =>
        error instanceof DmrError &&
        error.code === 'DEPENDENCY_MISSING' &&
        /apt-get install rabbitmq-server/.test(error.hint ?? ''),
    );
  });

  it('finds the machine’s own installation', { skip: skipUnless('RabbitMQ', () => locateRabbitmq()) }, () => {
    const found = locateRabbitmq();
    assert.match(found.version, /^\d+\.\d+\.\d+$/);
  });
});
