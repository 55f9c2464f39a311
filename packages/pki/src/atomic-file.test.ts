import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertCanCreate, ensurePrivateDirectory, writeFileAtomic, writeFilesAtomic } from './atomic-file.js';
import { rejectsWith, tempDir } from './test-support.js';

describe('atomic file writes', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    scratch = await tempDir();
  });
  after(() => scratch.cleanup());

  it('creates a file with the given mode and leaves no temporary file behind', async () => {
    const path = join(scratch.path, 'secret.key');
    await writeFileAtomic(path, 'key material', { mode: 0o600 });
    assert.equal(await readFile(path, 'utf8'), 'key material');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(
      (await readdir(scratch.path)).filter((name) => name.endsWith('.tmp')),
      [],
    );
  });

  it('refuses to replace an existing file unless told to, keeping its content', async () => {
    const path = join(scratch.path, 'keep.txt');
    await writeFile(path, 'original');
    await rejectsWith(writeFileAtomic(path, 'new'), 'ALREADY_EXISTS');
    assert.equal(await readFile(path, 'utf8'), 'original');
    await rejectsWith(assertCanCreate(path), 'ALREADY_EXISTS');
    await assertCanCreate(path, true);
    await writeFileAtomic(path, 'replaced', { overwrite: true });
    assert.equal(await readFile(path, 'utf8'), 'replaced');
  });

  it('reports a missing directory as NOT_FOUND before doing anything', async () => {
    await rejectsWith(assertCanCreate(join(scratch.path, 'nope', 'file')), 'NOT_FOUND');
    await rejectsWith(writeFileAtomic(join(scratch.path, 'nope', 'file'), 'x'), 'NOT_FOUND');
  });

  it('writes several files all or nothing', async () => {
    const a = join(scratch.path, 'a.pem');
    const b = join(scratch.path, 'b.pem');
    await writeFile(b, 'in the way');
    await rejectsWith(
      writeFilesAtomic([
        { path: a, data: 'A' },
        { path: b, data: 'B' },
      ]),
      'ALREADY_EXISTS',
    );
    await assert.rejects(stat(a), /ENOENT/, 'the first file was rolled back');
    assert.equal(await readFile(b, 'utf8'), 'in the way');
    assert.deepEqual(
      (await readdir(scratch.path)).filter((name) => name.endsWith('.tmp')),
      [],
    );
  });

  it('readers never see a half-written file while it is replaced', async () => {
    const path = join(scratch.path, 'state.json');
    const big = (n: number) => JSON.stringify({ n, pad: 'x'.repeat(200_000) });
    await writeFileAtomic(path, big(0));
    let reads = 0;
    const writer = (async () => {
      for (let n = 1; n <= 20; n++) await writeFileAtomic(path, big(n), { overwrite: true });
    })();
    let done = false;
    // finally: a failing writer must end the read loop too (`await writer` below reports it).
    void writer.finally(() => (done = true)).catch(() => undefined);
    while (!done) {
      JSON.parse(await readFile(path, 'utf8'));
      reads++;
    }
    await writer;
    assert.ok(reads > 0);
  });

  it('creates private directories 0700', async () => {
    const dir = join(scratch.path, 'private', 'nested');
    await ensurePrivateDirectory(dir);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    await ensurePrivateDirectory(dir);
  });
});
