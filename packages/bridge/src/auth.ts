/**
 * Who may use the bridge's HTTP API (docs/bridge.md "Authentication"). The
 * bridge sends as its organisation's bot, so whoever reaches its port can
 * speak for that organisation: a listener that is not on loopback must
 * authenticate its callers, by bearer tokens, mutual TLS, or both.
 *
 * - Bearer tokens (RFC 6750) come from a file and/or the environment. Only
 *   their SHA-256 digests are kept; a presented token is hashed and compared
 *   with every digest in constant time (timingSafeEqual on equal-length
 *   digests, no early exit), so neither a token's content, its length nor
 *   its position in the list shows in the timing. A `BearerTokens` prints as
 *   a count and where they came from, never as the tokens, so a
 *   configuration can be logged or shown (`dmr bridge check -o json`).
 * - A loopback listener without authentication stays possible (a service on
 *   the same host), but then answers only requests whose `Host` is a
 *   loopback name: a web page whose host name an attacker re-points at
 *   127.0.0.1 (DNS rebinding) sends its own host name, and is refused.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { inspect } from 'node:util';

/** RFC 6750 `b64token` characters; at least 32 of them (≥ 128 bits from a random generator). */
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
export const MIN_TOKEN_LENGTH = 32;
export const MAX_TOKEN_LENGTH = 512;

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class BearerTokens {
  readonly #digests: readonly Buffer[];
  /** Where the tokens came from (a file path, an environment variable), for messages: never the tokens. */
  readonly sources: readonly string[];

  constructor(tokens: readonly string[], sources: readonly string[]) {
    this.#digests = [...new Set(tokens)].map(digest);
    this.sources = [...sources];
  }

  get count(): number {
    return this.#digests.length;
  }

  /** Whether `presented` is one of the tokens; constant time in the token and in the list's order. */
  matches(presented: string): boolean {
    const candidate = digest(presented);
    let found = false;
    for (const known of this.#digests) {
      // Every digest is compared: `found ||` after the call, so the loop never ends early.
      found = timingSafeEqual(known, candidate) || found;
    }
    return found;
  }

  toJSON(): { count: number; sources: string[] } {
    return { count: this.count, sources: [...this.sources] };
  }

  [inspect.custom](): string {
    return `BearerTokens(${this.count} from ${this.sources.join(', ')})`;
  }
}

/** What is wrong with a token, without quoting it; undefined when it is acceptable. */
export function tokenProblem(token: string): string | undefined {
  if (token.length < MIN_TOKEN_LENGTH) return `is shorter than ${MIN_TOKEN_LENGTH} characters`;
  if (token.length > MAX_TOKEN_LENGTH) return `is longer than ${MAX_TOKEN_LENGTH} characters`;
  if (!TOKEN.test(token)) return 'has characters outside A-Z a-z 0-9 - . _ ~ + / (and trailing =)';
  return undefined;
}

/**
 * The tokens of a tokens file: one per line; blank lines and lines starting
 * with `#` are skipped. Problems name the line, never its content.
 */
export function parseTokenFile(text: string, source: string): { tokens: string[]; problems: string[] } {
  const tokens: string[] = [];
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const problem = tokenProblem(line);
    if (problem === undefined) tokens.push(line);
    else problems.push(`${source} line ${index + 1}: the token ${problem}`);
  });
  return { tokens, problems };
}

/** The tokens of `DMR_BRIDGE_AUTH_TOKENS`: comma- or whitespace-separated. */
export function parseTokenList(text: string, source: string): { tokens: string[]; problems: string[] } {
  const tokens: string[] = [];
  const problems: string[] = [];
  text
    .split(/[\s,]+/)
    .filter((item) => item !== '')
    .forEach((token, index) => {
      const problem = tokenProblem(token);
      if (problem === undefined) tokens.push(token);
      else problems.push(`${source}: token ${index + 1} ${problem}`);
    });
  return { tokens, problems };
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  return match?.[1];
}

const LOOPBACK = new BlockList();
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** Whether a listen host is loopback: `localhost` or a loopback IP literal (any other name counts as not). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare.toLowerCase() === 'localhost') return true;
  const family = isIP(bare);
  // A valid IPv4 literal is in 127.0.0.0/8 exactly when it starts with "127.": said without BlockList, whose
  // check parses the address into a SocketAddress (≈ 1.7 % of a sending bridge's CPU, every request's Host).
  if (family === 4) return bare.startsWith('127.');
  return family === 6 && LOOPBACK.check(bare, 'ipv6');
}

/**
 * Whether a `Host` header names this host by a loopback name: `localhost`
 * or a loopback IP literal, with any port. A DNS name (the rebinding case)
 * and a missing header are not.
 */
export function isLoopbackHostHeader(header: string | undefined): boolean {
  if (header === undefined || header === '') return false;
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(header.trim());
  return match?.[1] !== undefined && isLoopbackHost(match[1]);
}
