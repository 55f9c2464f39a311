import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startChild } from './child.js';

const FIXTURE = new URL('./child-fixture.js', import.meta.url);

describe('startChild / serveChild', () => {
  it('starts with a config, answers commands, and reports on stop', async () => {
    const child = await startChild(FIXTURE, 'fixture', { hello: 'world' });
    assert.deepEqual(child.info.config, { hello: 'world' });
    assert.equal(child.info.pid, child.pid);
    assert.deepEqual(await child.command({ a: 1 }), { echo: { a: 1 }, commands: 1 });
    assert.deepEqual(await child.command('x'), { echo: 'x', commands: 2 });
    await assert.rejects(child.command('boom'), /boom/);
    assert.deepEqual(await child.stop(), { commands: 2 });
    await assert.rejects(child.command('late'), /gone/);
  });

  it('rejects when the child fails to start', async () => {
    await assert.rejects(startChild(FIXTURE, 'fixture', { fail: true }), /asked to fail/);
  });
});
