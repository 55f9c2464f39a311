import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CA_FILES, readState, serialiseState, withCaLock, writeState, type CaState } from './ca-store.js';
import { rejectsWith, tempDir } from './test-support.js';

const STATE: CaState = {
  trustDomain: 'dmr.test',
  createdAt: new Date('2026-01-01T00:00:00Z'),
  crlNumber: 3,
  issued: [
    {
      serial: '1a2b',
      kind: 'node',
      id: 'dmr-tallinn',
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2026-01-02T00:00:00Z'),
      fingerprintSha256: 'ab'.repeat(32),
      dns: ['localhost'],
      ips: ['127.0.0.1'],
      issuedAt: new Date('2026-01-01T00:00:01Z'),
      revoked: { at: new Date('2026-01-01T12:00:00Z'), reason: 'superseded' },
    },
  ],
};

describe('CA state file', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    scratch = await tempDir();
  });
  after(() => scratch.cleanup());

  it('round-trips through ca.json with dates intact', async () => {
    await writeState(scratch.path, STATE);
    assert.deepEqual(await readState(scratch.path), STATE);
    assert.match(await readFile(join(scratch.path, CA_FILES.state), 'utf8'), /"format": "dmr-ca\/1"/);
  });

  it('refuses damaged state with CA_INVALID', async () => {
    const path = join(scratch.path, CA_FILES.state);
    const broken: Array<[string, RegExp]> = [
      ['{', /not valid JSON/],
      ['{"format":"other"}', /not a dmr-ca\/1/],
      [serialiseState({ ...STATE, trustDomain: 'Not Valid' }), /trustDomain/],
      [serialiseState({ ...STATE, crlNumber: -1 }), /crlNumber/],
      [serialiseState(STATE).replace('"kind": "node"', '"kind": "robot"'), /issued record at index 0/],
      [serialiseState(STATE).replace('"reason": "superseded"', '"reason": "bored"'), /issued record/],
    ];
    for (const [text, why] of broken) {
      await writeFile(path, text);
      await rejectsWith(readState(scratch.path), 'CA_INVALID', why);
    }
    await writeState(scratch.path, STATE);
  });

  it('serialises changes within a process: no lost updates', async () => {
    const dir = join(scratch.path, 'serial');
    await mkdir(dir);
    await writeState(dir, { ...STATE, crlNumber: 0 });
    await Promise.all(
      Array.from({ length: 25 }, () =>
        withCaLock(dir, async () => {
          const state = await readState(dir);
          await new Promise((resolve) => setTimeout(resolve, 1));
          await writeState(dir, { ...state, crlNumber: state.crlNumber + 1 });
        }),
      ),
    );
    assert.equal((await readState(dir)).crlNumber, 25);
    assert.ok(!(await readdir(dir)).includes(CA_FILES.lock), 'lock released');
  });

  it('takes over a lock left by a process that no longer exists', async () => {
    const child = spawn(process.execPath, ['-e', '']);
    const pid = child.pid;
    await new Promise((resolve) => child.on('exit', resolve));
    assert.ok(pid);
    await writeFile(join(scratch.path, CA_FILES.lock), `${pid}\n`);
    const result = await withCaLock(scratch.path, async () => 'ran');
    assert.equal(result, 'ran');
  });

  it('takes over an old lock file that names no process', async () => {
    const path = join(scratch.path, CA_FILES.lock);
    await writeFile(path, '');
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    assert.equal(await withCaLock(scratch.path, async () => 'ran'), 'ran');
  });

  it('releases the lock when the locked work fails', async () => {
    await assert.rejects(
      withCaLock(scratch.path, async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.ok(!(await readdir(scratch.path)).includes(CA_FILES.lock));
    assert.equal(await withCaLock(scratch.path, async () => 'next'), 'next');
  });
});
