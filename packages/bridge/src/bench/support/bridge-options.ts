/**
 * The bridge benchmark's flags (`npm run bench -- bridge --help`), apart from
 * the benchmark so they are unit-tested without a broker. Here, in the
 * helpers' folder, because scripts/bench.mjs lists every file of src/bench/
 * itself as a benchmark.
 */
import { parseArgs } from 'node:util';
import { DmrError } from '@dmr/core';

export const USAGE = `npm run bench -- bridge [-- options]

  --seconds S                measured seconds per level and path (default 10)
  --levels LIST              concurrent senders, closed loop (default 1,8,32)
  --delivery-concurrency N   the receiving bridge's delivery.concurrency (default: the product default)
  --loop arrival|accepted    a sender's next message goes once the last one arrived (default), or once it was
                             answered 202 (issue 14's generator: a receiving side that cannot keep up shows as latency)
  --endpoint-delay-ms N      the test endpoint answers each delivery POST after N ms (default 0): a slow recipient,
                             for the overload run (e.g. 100 at delivery concurrency 32 ≈ 320 msg/s at most)
  --queue-max-length N       the node's limits.queueMaxLength: the bound of the recipient's queue, the router's
                             inputs and its parking queue (default: the test node's 10,000); a small one (e.g. 500)
                             makes an overload reach the sending bridge's 503s within seconds
  --retry-after S            the sending bridge's send.retryAfterSeconds, the Retry-After of its 503s (default: the
                             product default); the generator waits that long and sends the same id again
  --no-raw                   skip the raw baseline (HTTP → quorum queue → HTTP, no DMR)
  --cpu-prof DIR             write a V8 CPU profile of each DMR bridge to DIR (ria-bot/rik-bot.cpuprofile)
  --help                     this text

Prints one table (DMR bridges next to the raw baseline, level by level, with the load average)
and the CPU each process spent per delivered message. A 503 is sent again with the same id after its
Retry-After, as a real caller would; a message counts as lost when it was answered 202 and neither
arrived nor was reported (reports.url) by the end of the drain.

Overload (issue 14): npm run bench -- bridge --levels 32 --loop accepted --endpoint-delay-ms 100 --queue-max-length 500 --no-raw`;

export interface BenchOptions {
  seconds: number;
  levels: number[];
  deliveryConcurrency: number | undefined;
  raw: boolean;
  loop: 'arrival' | 'accepted';
  /** Milliseconds the endpoint waits before answering a delivery (0: at once). */
  endpointDelayMs: number;
  /** limits.queueMaxLength of the node, or undefined for the test node's default. */
  queueMaxLength: number | undefined;
  /** send.retryAfterSeconds of the sending bridge, or undefined for the product default. */
  retryAfterSeconds: number | undefined;
  cpuProfileDir: string | undefined;
}

function invalid(message: string): DmrError {
  return new DmrError('INVALID_ARGUMENT', message, { hint: 'npm run bench -- bridge --help' });
}

/** The options from `argv`, or undefined for `--help`; throws INVALID_ARGUMENT on a bad value, naming the flag. */
export function parseOptions(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string', default: '10' },
      levels: { type: 'string', default: '1,8,32' },
      'delivery-concurrency': { type: 'string' },
      'no-raw': { type: 'boolean', default: false },
      loop: { type: 'string', default: 'arrival' },
      'endpoint-delay-ms': { type: 'string', default: '0' },
      'queue-max-length': { type: 'string' },
      'retry-after': { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const whole = (flag: string, text: string, least: number): number => {
    const value = Number(text);
    if (text.trim() === '' || !Number.isSafeInteger(value) || value < least) {
      const wanted = least === 0 ? 'a whole number ≥ 0' : 'a positive whole number';
      throw invalid(`--${flag} wants ${wanted}, not "${text}"`);
    }
    return value;
  };
  const optional = (flag: string, text: string | undefined): number | undefined =>
    text === undefined ? undefined : whole(flag, text, 1);
  if (values.loop !== 'arrival' && values.loop !== 'accepted') {
    throw invalid(`--loop is arrival or accepted, not "${values.loop}"`);
  }
  return {
    loop: values.loop,
    seconds: whole('seconds', values.seconds, 1),
    levels: values.levels.split(',').map((level) => whole('levels', level.trim(), 1)),
    deliveryConcurrency: optional('delivery-concurrency', values['delivery-concurrency']),
    raw: !values['no-raw'],
    endpointDelayMs: whole('endpoint-delay-ms', values['endpoint-delay-ms'], 0),
    queueMaxLength: optional('queue-max-length', values['queue-max-length']),
    retryAfterSeconds: optional('retry-after', values['retry-after']),
    cpuProfileDir: values['cpu-prof'],
  };
}

/**
 * How long a caller waits after a 503 before sending the same id again: the answer's Retry-After in seconds
 * (RFC 9110 also allows an HTTP date, which the bridge never sends), else `fallbackMs`.
 */
export function retryAfterMs(header: string | string[] | undefined, fallbackMs: number): number {
  const text = Array.isArray(header) ? header[0] : header;
  if (text === undefined || !/^\s*\d+\s*$/.test(text)) return fallbackMs;
  return Number(text) * 1000;
}
