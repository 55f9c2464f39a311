/**
 * Test helpers for every package, exported as `@dmr/core/testing` (never
 * from the package index, so production code cannot pick them up by
 * accident). They sit in core because the packages on the lowest floors
 * (pki, broker-harness, policy) test with them too; packages above the node
 * take them, with the test CentOps and NodeFixture, from `@dmr/testkit`.
 *
 * No amqplib here: the AMQP helpers take the few channel methods they call
 * as a structural type, which amqplib's channels satisfy.
 */
import { createServer, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitForOptions {
  /** Default 20 s: long enough for a loaded CI machine, short enough to fail a hung test. */
  timeoutMs?: number;
  /** Default 25 ms. */
  intervalMs?: number;
}

/**
 * Polls `probe` until it returns something other than `undefined`, `null` or
 * `false`, and returns that. Throws "timed out after N ms waiting for
 * <what>" when the time is up, so a failing test says what it waited for
 * (`what` may be a function, to describe the state at the timeout). A probe
 * that throws fails the wait at once.
 */
export async function waitFor<T>(
  what: string | (() => string),
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitForOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    }
    await sleep(intervalMs);
  }
}

/** The few methods of an AMQP channel (amqplib's Channel or ConfirmChannel) the channel helpers use. */
export interface ProbedChannel {
  once(event: 'error', listener: (error: Error & { code?: number }) => void): unknown;
  checkExchange(exchange: string): Promise<unknown>;
}

export interface ChannelClose {
  /** The AMQP reply code (403 access refused, 406 precondition failed, ...). */
  code: number | undefined;
  message: string;
}

/**
 * A synchronous AMQP call on `channel`: it returns only after the broker
 * handled everything sent on the channel before it, so after a publish it
 * proves the publish was accepted (the broker would have closed the channel
 * first otherwise). A passive declare of `amq.direct` needs no permission and
 * exists in every vhost.
 */
export async function channelRoundTrip(channel: ProbedChannel): Promise<void> {
  await channel.checkExchange('amq.direct');
}

/**
 * Runs an operation that the broker should answer by closing the channel,
 * and reports the close. Fire-and-forget operations (a plain publish) are
 * followed by a round trip on the same channel, so a channel that survives
 * fails the test at once instead of after a sleep.
 */
export async function channelCloseOf(
  channel: ProbedChannel,
  operation: () => Promise<unknown> | unknown,
): Promise<ChannelClose> {
  const closed = new Promise<ChannelClose>((resolve) => {
    channel.once('error', (error) => resolve({ code: error.code, message: error.message }));
  });
  const outcome = await Promise.race([
    (async () => {
      await operation();
      await channelRoundTrip(channel);
      return undefined;
    })().catch((error: unknown) => {
      const typed = error as { code?: number; message?: string };
      return { code: typed.code, message: typed.message ?? String(error) } satisfies ChannelClose;
    }),
    closed,
  ]);
  if (!outcome) throw new Error('the broker did not close the channel');
  // A pending call rejected by the close may carry no code: the close event has it.
  if (outcome.code === undefined) return closed;
  return outcome;
}

/** The error a refused connection attempt produced (fails the test when the connection succeeds). */
export async function connectionError(
  attempt: () => Promise<{ close(): Promise<void> }>,
): Promise<Error & { code?: unknown }> {
  let connection: { close(): Promise<void> } | undefined;
  try {
    connection = await attempt();
  } catch (error) {
    if (error instanceof Error) return error;
    throw new Error(`non-Error rejection: ${String(error)}`, { cause: error });
  }
  await connection.close().catch(() => undefined);
  throw new Error('the connection was accepted but should have been refused');
}

/**
 * A loopback TCP port nobody listens on: bound, read and released. For a
 * child process that needs a port on its command line (opa, a bridge), or
 * for a connection that must be refused. Another process may take the port
 * in between; tests on this machine take theirs from port 0 or their own
 * reserved block, so it does not happen in practice.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export { OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';
