import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DmrError } from '@dmr/core';

export interface AtomicWriteOptions {
  /** File mode for a new file, e.g. 0o600 for private keys (the umask can only narrow it). */
  mode?: number;
  /** Replace an existing file; otherwise an existing file is refused with ALREADY_EXISTS. */
  overwrite?: boolean;
}

export interface PendingFile extends AtomicWriteOptions {
  path: string;
  data: string | Uint8Array;
}

function errno(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

function alreadyExists(path: string): DmrError {
  return new DmrError('ALREADY_EXISTS', `${path} already exists`, {
    details: { path },
    hint: 'choose another path, or pass --force to replace it',
  });
}

function fsError(error: unknown, path: string): DmrError {
  const code = errno(error);
  if (code === 'EEXIST') return alreadyExists(path);
  if (code === 'ENOENT') {
    return new DmrError('NOT_FOUND', `directory ${dirname(path)} does not exist`, {
      details: { path },
      hint: 'create the directory first',
      cause: error,
    });
  }
  return new DmrError('INVALID_ARGUMENT', `cannot write ${path}: ${error instanceof Error ? error.message : code}`, {
    details: { path, errno: code },
    cause: error,
  });
}

/** Refuses early (before any work is done) when `path` cannot be created: the file exists or its directory is missing. */
export async function assertCanCreate(path: string, overwrite = false): Promise<void> {
  try {
    const parent = await stat(dirname(path));
    if (!parent.isDirectory()) throw new DmrError('INVALID_ARGUMENT', `${dirname(path)} is not a directory`);
  } catch (error) {
    throw error instanceof DmrError ? error : fsError(error, path);
  }
  if (overwrite) return;
  try {
    await stat(path);
  } catch (error) {
    if (errno(error) === 'ENOENT') return;
    throw fsError(error, path);
  }
  throw alreadyExists(path);
}

/** Writes `data` to a fresh temporary file beside `path` and flushes it, so publishing is a single rename or link. */
async function stage(file: PendingFile): Promise<string> {
  const temp = join(dirname(file.path), `.${basename(file.path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle;
  try {
    handle = await open(temp, 'wx', file.mode ?? 0o644);
  } catch (error) {
    throw fsError(error, file.path);
  }
  try {
    await handle.writeFile(file.data);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw fsError(error, file.path);
  }
  await handle.close();
  return temp;
}

/**
 * Moves a staged file into place. Without overwrite we hard-link instead of
 * renaming: link() fails if the target exists, so "create exclusively" and
 * "appear complete or not at all" hold together.
 */
async function publish(temp: string, file: PendingFile): Promise<void> {
  if (file.overwrite) {
    await rename(temp, file.path);
    return;
  }
  try {
    await link(temp, file.path);
  } catch (error) {
    if (errno(error) === 'EEXIST') throw alreadyExists(file.path);
    // Some filesystems (FUSE mounts, vfat) have no hard links; fall back to a checked rename.
    if (errno(error) !== 'EPERM' && errno(error) !== 'ENOTSUP' && errno(error) !== 'EXDEV')
      throw fsError(error, file.path);
    await assertCanCreate(file.path);
    await rename(temp, file.path);
    return;
  }
  await unlink(temp);
}

async function syncDirectory(dir: string): Promise<void> {
  // Makes the rename durable; not every platform lets a directory be opened, hence best effort.
  try {
    const handle = await open(dir, 'r');
    await handle.sync().finally(() => handle.close());
  } catch {
    // durability is best effort here; atomicity does not depend on it
  }
}

/**
 * Writes several files so that a failure leaves none of the new ones behind:
 * everything is staged first, then published; if one cannot be published
 * (say it appeared meanwhile) the files already published in this call are
 * removed again. Replaced files cannot be restored, so callers check
 * `assertCanCreate` first.
 */
export async function writeFilesAtomic(files: readonly PendingFile[]): Promise<void> {
  const staged: Array<{ temp: string; file: PendingFile }> = [];
  const published: PendingFile[] = [];
  try {
    for (const file of files) staged.push({ temp: await stage(file), file });
    for (const { temp, file } of staged) {
      await publish(temp, file);
      published.push(file);
    }
  } catch (error) {
    for (const file of published) if (!file.overwrite) await unlink(file.path).catch(() => undefined);
    for (const { temp } of staged) await unlink(temp).catch(() => undefined);
    throw error;
  }
  for (const dir of new Set(files.map((file) => dirname(file.path)))) await syncDirectory(dir);
}

export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  await writeFilesAtomic([{ path, data, ...options }]);
}

/** Creates `dir` (and parents) readable by its owner only; an existing directory is left as it is. */
export async function ensurePrivateDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw fsError(error, join(dir, '.'));
  }
}
