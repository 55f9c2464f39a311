/**
 * Live progress of `dmr up`: one line per step with ✓ and its duration; on a
 * terminal a spinner (with the step's latest detail) while a long step runs,
 * plain lines otherwise (a log file, CI, a pipe), so logs stay readable.
 */
export interface StepHandle {
  /** The latest sub-step, shown beside the spinner (not printed on a pipe). */
  update(detail: string): void;
  done(detail?: string): number;
  fail(error: unknown): void;
}

export interface MeshProgress {
  step(name: string): StepHandle;
  /** A line of its own (message round trips, warnings). */
  line(text: string): void;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export interface TerminalProgressOptions {
  stream: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Spinner and in-place updates; default: the stream is a TTY. */
  tty?: boolean;
  /** Called with every finished step (mesh.json records them for a detached start's parent). */
  onStepDone?: (step: { name: string; ms: number; detail: string | undefined }) => void;
}

export class TerminalProgress implements MeshProgress {
  readonly #stream: NodeJS.WritableStream;
  readonly #tty: boolean;
  readonly #onStepDone: TerminalProgressOptions['onStepDone'];
  #active: { name: string; detail: string; started: number } | undefined;
  #frame = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: TerminalProgressOptions) {
    this.#stream = options.stream;
    this.#tty = options.tty ?? ('isTTY' in options.stream && options.stream.isTTY === true);
    this.#onStepDone = options.onStepDone;
  }

  step(name: string): StepHandle {
    const started = performance.now();
    this.#active = { name, detail: '', started };
    if (this.#tty) {
      this.#timer ??= setInterval(() => this.#draw(), 80);
      this.#timer.unref();
      this.#draw();
    } else {
      this.#write(`… ${name}\n`);
    }
    let finished = false;
    return {
      update: (detail) => {
        if (this.#active?.name === name) this.#active.detail = detail;
      },
      done: (detail) => {
        const ms = performance.now() - started;
        if (finished) return ms;
        finished = true;
        this.#finish(`✓ ${name}${detail ? `  ${detail}` : ''}  (${formatMs(ms)})`);
        this.#onStepDone?.({ name, ms: Math.round(ms), detail });
        return ms;
      },
      fail: (error) => {
        if (finished) return;
        finished = true;
        // The first line only: the full error (with a log excerpt) is reported once, by the caller.
        const message = (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
        this.#finish(`✗ ${name}: ${message}`);
      },
    };
  }

  line(text: string): void {
    if (this.#tty && this.#active) {
      this.#write(`\r\x1b[K${text}\n`);
      this.#draw();
    } else {
      this.#write(`${text}\n`);
    }
  }

  /** A display that can no longer be written (the terminal closed) must never break a start or a stop. */
  #write(text: string): void {
    try {
      this.#stream.write(text);
    } catch {
      // Nothing to show it on.
    }
  }

  #finish(text: string): void {
    this.#active = undefined;
    if (this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
    this.#write(this.#tty ? `\r\x1b[K${text}\n` : `${text}\n`);
  }

  #draw(): void {
    const active = this.#active;
    if (!active) return;
    this.#frame = (this.#frame + 1) % FRAMES.length;
    const seconds = ((performance.now() - active.started) / 1000).toFixed(1);
    const detail = active.detail === '' ? '' : `  ${active.detail}`;
    this.#write(`\r\x1b[K${FRAMES[this.#frame] ?? ''} ${active.name}${detail}  ${seconds} s`);
  }
}
