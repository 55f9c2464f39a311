/**
 * The replay guard's memory on disk, so a restarted router (a crash, a
 * SIGKILL, an upgrade) still refuses the ids its shard saw within the window
 * (docs/decisions/0030-durable-replay-memory-and-grace-renewal.md).
 *
 * Layout: one directory per shard (`<dataDir>/state/replay/shard-<n>/`),
 * written only by that shard's router, holding append-only segment files
 * `<seq>.log`. A segment takes lines for `segmentMs`, then the next one is
 * opened; a segment is deleted once every id it names has expired, so old
 * ids are dropped whole files at a time and nothing is ever rewritten (no
 * compaction pass, no pause proportional to the window). Each start opens
 * a fresh segment, so a line torn by a crash is never continued.
 *
 *   +<expiresAt ms> <message id> <sender>   an id remembered until expiresAt
 *   ~<expiresAt ms> <message id> <sender>   the same, its message parked by the router (ReplayGuard.park)
 *   -<expiresAt ms> <message id>            released again (a requeued redelivery)
 *
 * When is an id on disk? remembered() buffers the line and queues one
 * flush per synchronous burst as a microtask: it runs before any
 * continuation of the message that was accepted (the policy step is behind
 * an `await`, which queues after it), so every id is written with write(2)
 * before its message is delivered, and always before its ack (an ack waits
 * for broker confirms, i.e. I/O, which only comes after the microtasks).
 * A killed process loses nothing written (the kernel has it); a machine
 * crash loses what was written since the last fdatasync, at most
 * `syncIntervalMs` of ids (default 1 s). No per-message fsync: measured at
 * ≈ 2 ms each on the test machine, it would cap a router's throughput.
 *
 * Loading trusts nothing: a line that does not parse (a torn last line, a
 * foreign file) is skipped and counted. It is bounded against a corrupt or
 * planted directory: only regular files are read (never a FIFO, a device or
 * a symlink, which could block or never end), in pieces (no segment is one
 * string), a line longer than any the journal writes is skipped without
 * being kept, and at most `loadMaxBytes` are read, newest segments first —
 * the oldest past the bound are deleted unread (their ids are the first to
 * expire) and counted.
 */
import {
  closeSync,
  constants,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  readdirSync,
  unlinkSync,
  writeSync,
  type PathLike,
} from 'node:fs';
import { join } from 'node:path';

/** One remembered id, as the guard holds it. */
export interface RememberedId {
  id: string;
  expiresAt: number;
  sender: string;
  /** Its message was handed back for a later attempt of the router's own (ReplayGuard.park). */
  parked?: true;
}

/** What the guard writes through (ReplayJournal, or nothing). */
export interface ReplayMemorySink {
  remembered(id: string, expiresAt: number, sender: string): void;
  /** Remembered as before, and marked parked: a restarted router takes its own copy back once (ReplayGuard.park). */
  parked(id: string, expiresAt: number, sender: string): void;
  forgotten(id: string, expiresAt: number): void;
}

/** A sink that also hands over, once, what it loaded from disk (the router's `replayMemory`). */
export interface DurableReplayMemory extends ReplayMemorySink {
  takeLoaded(): RememberedId[];
}

export interface ReplayJournalOptions {
  /** The shard's own directory (created 0700 if missing). */
  dir: string;
  /** How long one segment takes lines (default 15 min): the granularity of deletion. */
  segmentMs?: number;
  /** fdatasync of the open segment at most this often, when something was written (default 1000 ms). */
  syncIntervalMs?: number;
  now?: () => number;
  /** Write failures (disk full, I/O error): the router keeps routing, the lines stay buffered (bounded). */
  onError?: (error: Error) => void;
  /** Most bytes of segments read at start, newest first (default DEFAULT_REPLAY_LOAD_MAX_BYTES). */
  loadMaxBytes?: number;
}

/**
 * 1 GiB: above any honest journal — a full guard of 1 000 000 ids at the
 * longest line (309 bytes) is ≈ 309 MB, and a release line is shorter still.
 */
export const DEFAULT_REPLAY_LOAD_MAX_BYTES = 1024 * 1_048_576;

export interface ReplayJournalLoad {
  /** Unexpired, unreleased ids found. */
  ids: number;
  /** Lines read, and those skipped as unreadable. */
  lines: number;
  skipped: number;
  /** Segment files read, and those deleted as wholly expired. */
  segments: number;
  deleted: number;
  /** Segment files not read: not a regular file (left alone), or past loadMaxBytes (deleted). */
  unread: number;
  millis: number;
}

/** Lowercase UUIDs, as validateAtOrigin / validateRelayed admit them. */
const MESSAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A sender is a validated id: no white space, bounded. */
const SENDER = /^[^\s]{0,253}$/;
const SEGMENT = /^(\d{12})\.log$/;
/** The longest line the journal writes ('+', a safe integer, a UUID, a sender, spaces, newline). */
const MAX_LINE = 1 + 16 + 1 + 36 + 1 + 253 + 1;
/** A segment is read in pieces of this size. */
const READ_CHUNK = 1_048_576;
/** Buffered lines kept through write failures before the oldest are given up (and reported). */
const MAX_PENDING_CHARS = 16 * 1_048_576;

interface Segment {
  seq: number;
  /** The latest expiry named in it: the segment can go once that has passed. */
  maxExpiresAt: number;
}

function segmentName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.log`;
}

export class ReplayJournal implements DurableReplayMemory {
  readonly dir: string;
  /** What open() found. */
  readonly load: ReplayJournalLoad;
  #loaded: RememberedId[];
  readonly #segmentMs: number;
  readonly #now: () => number;
  readonly #onError: (error: Error) => void;
  /** Closed segments still holding unexpired ids, oldest first. */
  readonly #closed: Segment[] = [];
  #current: Segment;
  #fd: number;
  #openedAt: number;
  #pending = '';
  /** The latest expiry among the pending lines: it belongs to the segment they are written to. */
  #pendingMax = 0;
  #flushQueued = false;
  #dirty = false;
  #syncing = false;
  #failing = false;
  readonly #timer: NodeJS.Timeout;
  #isClosed = false;

  private constructor(
    options: ReplayJournalOptions,
    found: { closed: Segment[]; nextSeq: number; loaded: RememberedId[]; load: ReplayJournalLoad },
  ) {
    const { closed, nextSeq } = found;
    this.dir = options.dir;
    this.load = found.load;
    this.#loaded = found.loaded;
    this.#segmentMs = options.segmentMs ?? 15 * 60_000;
    this.#now = options.now ?? Date.now;
    this.#onError = options.onError ?? (() => undefined);
    this.#closed.push(...closed);
    this.#current = { seq: nextSeq, maxExpiresAt: 0 };
    this.#fd = openSync(join(this.dir, segmentName(nextSeq)), 'a', 0o600);
    this.#openedAt = this.#now();
    this.#timer = setInterval(() => this.#sync(), options.syncIntervalMs ?? 1000);
    this.#timer.unref();
  }

  /**
   * Reads the shard's segments (dropping those wholly expired), then opens
   * a fresh one for this process. Synchronous on purpose: it runs once,
   * before the router consumes, and nothing else is waiting on the loop.
   */
  static open(options: ReplayJournalOptions): ReplayJournal {
    const started = performance.now();
    const now = (options.now ?? Date.now)();
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    const seqs = readdirSync(options.dir)
      .map((name) => SEGMENT.exec(name)?.[1])
      .filter((seq): seq is string => seq !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    // What is read: regular files only, newest first until loadMaxBytes; the rest is not.
    const sizes = new Map<number, number>();
    let budget = options.loadMaxBytes ?? DEFAULT_REPLAY_LOAD_MAX_BYTES;
    let unread = 0;
    let deleted = 0;
    for (const seq of [...seqs].reverse()) {
      const file = join(options.dir, segmentName(seq));
      const size = regularFileSize(file);
      if (size === undefined) unread += 1;
      else if (size > budget) {
        unlinkQuietly(file);
        unread += 1;
        deleted += 1;
        budget = 0;
      } else {
        sizes.set(seq, size);
        budget -= size;
      }
    }
    const held = new Map<string, RememberedId>();
    const closed: Segment[] = [];
    let lines = 0;
    let skipped = 0;
    for (const seq of seqs) {
      const size = sizes.get(seq);
      if (size === undefined) continue;
      const file = join(options.dir, segmentName(seq));
      const read = readSegment(file, size, held);
      lines += read.lines;
      skipped += read.skipped;
      if (read.maxExpiresAt <= now) {
        unlinkQuietly(file);
        deleted += 1;
      } else closed.push({ seq, maxExpiresAt: read.maxExpiresAt });
    }
    const entries: RememberedId[] = [];
    for (const entry of held.values()) if (entry.expiresAt > now) entries.push(entry);
    return new ReplayJournal(options, {
      closed,
      nextSeq: (seqs.at(-1) ?? 0) + 1,
      loaded: entries,
      load: {
        ids: entries.length,
        lines,
        skipped,
        segments: seqs.length,
        deleted,
        unread,
        millis: performance.now() - started,
      },
    });
  }

  /** The ids open() found, in the order they were written; handed over once (the guard keeps them). */
  takeLoaded(): RememberedId[] {
    const loaded = this.#loaded;
    this.#loaded = [];
    return loaded;
  }

  remembered(id: string, expiresAt: number, sender: string): void {
    this.#append(`+${expiresAt} ${id} ${sender}\n`, expiresAt);
  }

  parked(id: string, expiresAt: number, sender: string): void {
    this.#append(`~${expiresAt} ${id} ${sender}\n`, expiresAt);
  }

  forgotten(id: string, expiresAt: number): void {
    this.#append(`-${expiresAt} ${id}\n`, expiresAt);
  }

  /** Writes what is buffered now (also called by the queued microtask). */
  flush(): void {
    this.#flushQueued = false;
    if (this.#pending === '' || this.#isClosed) return;
    try {
      this.#rotateIfDue();
      writeSync(this.#fd, this.#pending);
      if (this.#pendingMax > this.#current.maxExpiresAt) this.#current.maxExpiresAt = this.#pendingMax;
      this.#pending = '';
      this.#pendingMax = 0;
      this.#dirty = true;
      this.#failing = false;
    } catch (error) {
      if (!this.#failing) this.#onError(error instanceof Error ? error : new Error(String(error)));
      this.#failing = true;
      // Bounded: past the cap the oldest lines are given up; the next success says nothing about them.
      if (this.#pending.length > MAX_PENDING_CHARS) {
        this.#pending = this.#pending.slice(this.#pending.indexOf('\n', this.#pending.length - MAX_PENDING_CHARS) + 1);
      }
    }
  }

  /** Flushes, syncs and closes the open segment. */
  close(): void {
    if (this.#isClosed) return;
    this.flush();
    clearInterval(this.#timer);
    this.#isClosed = true;
    try {
      if (this.#dirty) fdatasyncQuietly(this.#fd);
    } finally {
      closeSync(this.#fd);
    }
  }

  #append(line: string, expiresAt: number): void {
    if (this.#isClosed) return;
    this.#pending += line;
    if (expiresAt > this.#pendingMax) this.#pendingMax = expiresAt;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** A new segment every segmentMs; closed segments whose ids all expired are deleted. */
  #rotateIfDue(): void {
    const now = this.#now();
    if (now - this.#openedAt < this.#segmentMs) return;
    const previous = this.#fd;
    this.#closed.push(this.#current);
    this.#current = { seq: this.#current.seq + 1, maxExpiresAt: 0 };
    this.#fd = openSync(join(this.dir, segmentName(this.#current.seq)), 'a', 0o600);
    this.#openedAt = now;
    // The ids of the previous segment must survive a machine crash like the others: sync before closing.
    fdatasync(previous, () => closeSync(previous));
    while (this.#closed.length > 0 && (this.#closed[0] as Segment).maxExpiresAt <= now) {
      unlinkQuietly(join(this.dir, segmentName((this.#closed.shift() as Segment).seq)));
    }
  }

  #sync(): void {
    if (!this.#dirty || this.#syncing || this.#isClosed) return;
    this.#dirty = false;
    this.#syncing = true;
    fdatasync(this.#fd, (error) => {
      this.#syncing = false;
      if (error !== null) {
        this.#dirty = true;
        this.#onError(error);
      }
    });
  }
}

/** The size of `file` if it is a regular file (not a symlink, FIFO, device or directory). */
function regularFileSize(file: string): number | undefined {
  try {
    const stats = lstatSync(file);
    return stats.isFile() ? stats.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Applies at most `limit` bytes of one segment's lines to `held`, read in
 * pieces; returns its latest expiry and what it read. A line longer than
 * MAX_LINE is skipped as it streams past, never held whole.
 */
function readSegment(
  file: string,
  limit: number,
  held: Map<string, RememberedId>,
): { lines: number; skipped: number; maxExpiresAt: number } {
  let lines = 0;
  let skipped = 0;
  let maxExpiresAt = 0;
  const apply = (line: string): void => {
    lines += 1;
    const parsed = parseLine(line);
    if (parsed === undefined) {
      skipped += 1;
      return;
    }
    if (parsed.expiresAt > maxExpiresAt) maxExpiresAt = parsed.expiresAt;
    // Re-inserted at the back (a remembered id): insertion order stays expiry order.
    held.delete(parsed.id);
    if (parsed.sender !== undefined) {
      held.set(parsed.id, {
        id: parsed.id,
        expiresAt: parsed.expiresAt,
        sender: parsed.sender,
        ...(parsed.parked ? { parked: true } : {}),
      });
    }
  };
  let fd: number;
  try {
    // No symlink followed, no wait on a FIFO swapped in since the lstat; fstat checks what was opened.
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return { lines, skipped, maxExpiresAt };
  }
  try {
    if (!fstatSync(fd).isFile()) return { lines, skipped, maxExpiresAt };
    const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(limit, 1)));
    /** The start of a line not yet ended; '' and `overlong` once it passed MAX_LINE. */
    let partial = '';
    let overlong = false;
    let left = limit;
    while (left > 0) {
      const got = readSync(fd, buffer, 0, Math.min(buffer.length, left), null);
      if (got === 0) break;
      left -= got;
      const text = buffer.toString('latin1', 0, got);
      let start = 0;
      for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n', start)) {
        if (overlong) {
          lines += 1;
          skipped += 1;
        } else {
          const line = partial + text.slice(start, end);
          if (line.length > MAX_LINE) {
            lines += 1;
            skipped += 1;
          } else if (line !== '') apply(line);
        }
        partial = '';
        overlong = false;
        start = end + 1;
      }
      if (!overlong) {
        partial += text.slice(start, start + MAX_LINE + 1);
        if (partial.length > MAX_LINE) {
          partial = '';
          overlong = true;
        }
      }
    }
    // No newline at the end: a line torn by a crash.
    if (partial !== '' || overlong) {
      lines += 1;
      skipped += 1;
    }
  } catch {
    // Unreadable midway: what was read counts, the rest is as if torn.
  } finally {
    closeSync(fd);
  }
  return { lines, skipped, maxExpiresAt };
}

function parseLine(
  line: string,
): { id: string; expiresAt: number; sender: string | undefined; parked: boolean } | undefined {
  const kind = line[0];
  if (kind !== '+' && kind !== '-' && kind !== '~') return undefined;
  const first = line.indexOf(' ');
  if (first < 0) return undefined;
  const expiresAt = Number(line.slice(1, first));
  if (!Number.isSafeInteger(expiresAt) || expiresAt <= 0) return undefined;
  const second = line.indexOf(' ', first + 1);
  const id = line.slice(first + 1, second < 0 ? undefined : second);
  if (!MESSAGE_ID.test(id)) return undefined;
  if (kind === '-') return second < 0 ? { id, expiresAt, sender: undefined, parked: false } : undefined;
  if (second < 0) return undefined;
  const sender = line.slice(second + 1);
  return SENDER.test(sender) ? { id, expiresAt, sender, parked: kind === '~' } : undefined;
}

function unlinkQuietly(file: PathLike): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone: someone cleaned the directory; nothing to keep.
  }
}

function fdatasyncQuietly(fd: number): void {
  try {
    // Synchronous only on close: the process is stopping and nothing else waits.
    fdatasyncSync(fd);
  } catch {
    // A failing disk at shutdown: the lines were written; only a machine crash now could lose them.
  }
}
