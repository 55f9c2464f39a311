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
 * foreign file) is skipped and counted.
 */
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readFileSync,
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
}

/** What the guard writes through (ReplayJournal, or nothing). */
export interface ReplayMemorySink {
  remembered(id: string, expiresAt: number, sender: string): void;
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
}

export interface ReplayJournalLoad {
  /** Unexpired, unreleased ids found. */
  ids: number;
  /** Lines read, and those skipped as unreadable. */
  lines: number;
  skipped: number;
  /** Segment files read, and those deleted as wholly expired. */
  segments: number;
  deleted: number;
  millis: number;
}

/** Lowercase UUIDs, as validateAtOrigin / validateRelayed admit them. */
const MESSAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A sender is a validated id: no white space, bounded. */
const SENDER = /^[^\s]{0,253}$/;
const SEGMENT = /^(\d{12})\.log$/;
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
    const held = new Map<string, RememberedId>();
    const closed: Segment[] = [];
    let lines = 0;
    let skipped = 0;
    let deleted = 0;
    for (const seq of seqs) {
      const file = join(options.dir, segmentName(seq));
      const read = readSegment(file, held);
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

/** Applies one segment's lines to `held`; returns its latest expiry and what it read. */
function readSegment(
  file: string,
  held: Map<string, RememberedId>,
): { lines: number; skipped: number; maxExpiresAt: number } {
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return { lines: 0, skipped: 0, maxExpiresAt: 0 };
  }
  let lines = 0;
  let skipped = 0;
  let maxExpiresAt = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    // No newline: a line torn by a crash.
    if (end < 0) end = text.length;
    const line = text.slice(start, end);
    start = end + 1;
    if (line === '') continue;
    lines += 1;
    const parsed = parseLine(line);
    if (parsed === undefined || end === text.length) {
      skipped += 1;
      continue;
    }
    if (parsed.expiresAt > maxExpiresAt) maxExpiresAt = parsed.expiresAt;
    if (parsed.sender === undefined) held.delete(parsed.id);
    else {
      // Re-inserted at the back: insertion order stays expiry order.
      held.delete(parsed.id);
      held.set(parsed.id, { id: parsed.id, expiresAt: parsed.expiresAt, sender: parsed.sender });
    }
  }
  return { lines, skipped, maxExpiresAt };
}

function parseLine(line: string): { id: string; expiresAt: number; sender: string | undefined } | undefined {
  const kind = line[0];
  if (kind !== '+' && kind !== '-') return undefined;
  const first = line.indexOf(' ');
  if (first < 0) return undefined;
  const expiresAt = Number(line.slice(1, first));
  if (!Number.isSafeInteger(expiresAt) || expiresAt <= 0) return undefined;
  const second = line.indexOf(' ', first + 1);
  const id = line.slice(first + 1, second < 0 ? undefined : second);
  if (!MESSAGE_ID.test(id)) return undefined;
  if (kind === '-') return second < 0 ? { id, expiresAt, sender: undefined } : undefined;
  if (second < 0) return undefined;
  const sender = line.slice(second + 1);
  return SENDER.test(sender) ? { id, expiresAt, sender } : undefined;
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
