/**
 * Follows the node's configuration feed: the SSE stream when it works (a new
 * revision arrives within milliseconds, which is what makes a denylist take
 * effect fast), long-polling when it does not (a proxy that buffers or cuts
 * streams), reconnecting with back-off and jitter either way.
 *
 * Documents are handed to `onDocument` one at a time. While one is being
 * applied, newer ones are coalesced: only the latest waits, since each
 * document is the complete configuration and an intermediate revision
 * would be applied only to be replaced at once.
 */
import type { Logger } from 'pino';
import { isDmrError } from '@dmr/core';
import { Backoff } from './backoff.js';
import type { CentOpsClient } from './centops-client.js';

export interface FeedDocument {
  /** The revision CentOps announced (SSE id / ETag); trusted only after verification. */
  revision: number;
  jws: string;
  via: 'stream' | 'poll';
}

export interface FeedOptions {
  /** Only the two feed calls: tests pass a fake. */
  client: Pick<CentOpsClient, 'stream' | 'config'>;
  nodeId: string;
  logger: Logger;
  /** Prefer the stream (default true). */
  stream?: boolean;
  waitSeconds?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** After a stream failure, this many long-polls before the stream is tried again. */
  pollsBeforeStreamRetry?: number;
  onDocument: (document: FeedDocument) => Promise<void>;
  onConnected?: (connected: boolean) => void;
}

export class FeedFollower {
  readonly #options: FeedOptions;
  readonly #backoff: Backoff;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #lastSeen: number | undefined;
  #pending: FeedDocument | undefined;
  #working: Promise<void> | undefined;
  #pollsLeft = 0;
  #sleep: { timer: NodeJS.Timeout; resolve: () => void } | undefined;

  constructor(options: FeedOptions) {
    this.#options = options;
    this.#backoff = new Backoff({
      initialMs: options.backoffInitialMs ?? 500,
      maxMs: options.backoffMaxMs ?? 30_000,
    });
  }

  /** The last revision CentOps sent (applied or refused): the long-poll's If-None-Match. */
  get lastSeen(): number | undefined {
    return this.#lastSeen;
  }

  start(lastSeen: number | undefined): void {
    this.#lastSeen = lastSeen;
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.resolve();
    }
    await this.#loop;
    await this.#working;
  }

  /** Waits until every document received so far has been handled (tests). */
  async idle(): Promise<void> {
    while (this.#working !== undefined) await this.#working;
  }

  #connected(value: boolean): void {
    this.#options.onConnected?.(value);
  }

  #receive(document: FeedDocument): void {
    this.#lastSeen = document.revision;
    this.#pending = document;
    if (this.#working === undefined) this.#working = this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending !== undefined) {
        const document = this.#pending;
        this.#pending = undefined;
        try {
          await this.#options.onDocument(document);
        } catch (error) {
          // onDocument reports its own failures; this is a last resort so the feed keeps going.
          this.#options.logger.error({ err: error, revision: document.revision }, 'applying a document failed');
        }
      }
    } finally {
      this.#working = undefined;
    }
  }

  async #pause(ms: number): Promise<void> {
    if (this.#stop.signal.aborted) return;
    await new Promise<void>((resolve) => {
      this.#sleep = { timer: setTimeout(resolve, ms), resolve };
    });
    this.#sleep = undefined;
  }

  async #run(): Promise<void> {
    const { logger } = this.#options;
    const preferStream = this.#options.stream ?? true;
    while (!this.#stop.signal.aborted) {
      const useStream = preferStream && this.#pollsLeft === 0;
      try {
        if (useStream) await this.#followStream();
        else await this.#pollOnce();
        if (!useStream) this.#pollsLeft = Math.max(0, this.#pollsLeft - 1);
        if (useStream && !this.#stop.signal.aborted) {
          // The server ended the stream (restart, revocation check): reconnect after a pause.
          this.#connected(false);
          await this.#pause(this.#backoff.next());
        }
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        this.#connected(false);
        const delay = this.#backoff.next();
        if (useStream) this.#pollsLeft = this.#options.pollsBeforeStreamRetry ?? 10;
        logger.warn(
          {
            err: isDmrError(error) ? { code: error.code, message: error.message } : error,
            via: useStream ? 'stream' : 'poll',
            retryInMs: delay,
          },
          'configuration feed failed',
        );
        await this.#pause(delay);
      }
    }
    this.#connected(false);
  }

  async #followStream(): Promise<void> {
    const { client, nodeId, logger } = this.#options;
    let failure: Error | undefined;
    const local = new AbortController();
    const signal = AbortSignal.any([this.#stop.signal, local.signal]);
    await client.stream(
      nodeId,
      (event) => {
        if (event.event === 'config') {
          const revision = Number(event.id);
          this.#backoff.reset();
          this.#receive({ revision: Number.isSafeInteger(revision) ? revision : -1, jws: event.data, via: 'stream' });
        } else if (event.event === 'error') {
          failure = new Error(`the stream ended with an error: ${event.data.slice(0, 300)}`);
          local.abort();
        }
      },
      signal,
      () => {
        logger.info({ via: 'stream' }, 'configuration feed connected');
        this.#connected(true);
      },
    );
    if (failure) throw failure;
  }

  async #pollOnce(): Promise<void> {
    const { client, nodeId } = this.#options;
    const answer = await client.config(nodeId, this.#lastSeen, this.#options.waitSeconds ?? 30, this.#stop.signal);
    this.#connected(true);
    this.#backoff.reset();
    if (answer !== undefined) this.#receive({ ...answer, via: 'poll' });
  }
}
