/**
 * Keeps the installed CRL fresh while the harness process lives. It starts
 * with the first installation, before any node boots: a CRL that expires
 * during a slow boot would refuse every client, the readiness probe included.
 */
import { crlRefreshDelayMs, installCrlFile, type InstalledCrl } from './crl.js';

export interface CrlSource {
  createCrl(options: { nextUpdateMs: number }): Promise<string>;
}

export interface CrlKeeperOptions {
  crlDir: string;
  ca: CrlSource;
  /** nextUpdate of the CRLs it issues. */
  validityMs: number;
  /** Fixed interval instead of half the remaining validity. */
  refreshMs?: number;
  /** After a failed refresh, try again after at most this long. */
  retryMs?: number;
  onRefreshed?: (installed: InstalledCrl) => void;
  onRefreshFailed?: (error: unknown) => void;
}

export class CrlKeeper {
  readonly #options: CrlKeeperOptions;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #last: InstalledCrl | undefined;
  /** Where each installation is recorded (the state file); replaceable once the harness exists. */
  record: (installed: InstalledCrl) => Promise<void> = async () => undefined;

  constructor(options: CrlKeeperOptions) {
    this.#options = options;
  }

  get last(): InstalledCrl | undefined {
    return this.#last;
  }

  /** Issues and installs a CRL now. */
  async refresh(): Promise<InstalledCrl> {
    return this.install(await this.#options.ca.createCrl({ nextUpdateMs: this.#options.validityMs }));
  }

  /** Installs a CRL (e.g. right after a revocation) and re-plans the next refresh around its nextUpdate. */
  async install(pem: string): Promise<InstalledCrl> {
    const installed = await installCrlFile(this.#options.crlDir, pem);
    this.#last = installed;
    await this.record(installed);
    if (this.#running) this.#schedule();
    return installed;
  }

  start(): void {
    this.#running = true;
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
  }

  #schedule(delayMs?: number): void {
    clearTimeout(this.#timer);
    if (!this.#running) return;
    const delay = delayMs ?? this.#options.refreshMs ?? crlRefreshDelayMs({ nextUpdate: this.#last?.nextUpdate });
    this.#timer = setTimeout(() => {
      this.refresh().then(
        (installed) => this.#options.onRefreshed?.(installed),
        (error: unknown) => {
          this.#options.onRefreshFailed?.(error);
          const retry = Math.min(
            this.#options.retryMs ?? 30_000,
            crlRefreshDelayMs({ nextUpdate: this.#last?.nextUpdate }),
          );
          this.#schedule(retry);
        },
      );
    }, delay);
    // The timer alone must not keep a finished test process alive.
    this.#timer.unref();
  }
}
