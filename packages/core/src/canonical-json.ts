/**
 * The one canonical JSON of DMR: RFC 8785 (JSON Canonicalization Scheme),
 * from `canonicalize`, the implementation by one of the RFC's authors.
 * Object keys sorted by UTF-16 code units, no whitespace, numbers as
 * ECMAScript prints them, strings as JSON.stringify escapes them. Two values
 * that mean the same are byte-identical, so digests and "unchanged" checks
 * do not depend on key order (PostgreSQL's jsonb reorders keys, for one).
 *
 * Not for OPA's bundle file digests: OPA hashes its own canonical form (Go's
 * key order and escaping); @dmr/policy keeps that one (bundle-hash.ts).
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { DmrError } from './errors.js';

/**
 * RFC 8785 text of `value`. Fields whose value is undefined are left out, as
 * JSON.stringify does. Data with no canonical form (NaN, ±Infinity, a string
 * with a lone surrogate, which JSON.parse lets through from a `\ud800`
 * escape) is refused with VALIDATION_FAILED, so an API answers 422 rather
 * than failing inside; a cycle or a top-level undefined is a TypeError.
 */
export function canonicalJson(value: unknown): string {
  try {
    return plainCanonical(value, 0);
  } catch (error) {
    if (error !== NEEDS_LIBRARY) throw error;
  }
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    if (/circular/i.test(reason)) throw new TypeError(`no canonical JSON: ${reason}`, { cause: error });
    throw new DmrError('VALIDATION_FAILED', `the data has no canonical JSON form (RFC 8785): ${reason}`, {
      hint: 'numbers must be finite and strings well-formed Unicode (no lone surrogate)',
      details: { problems: [{ path: '', message: reason }] },
      cause: error,
    });
  }
  if (text === undefined) throw new TypeError(`value of type ${typeof value} has no JSON form`);
  return text;
}

/** Thrown by plainCanonical for anything but plain JSON data: the library then decides (output or error). */
const NEEDS_LIBRARY = Symbol('needs the library');
/** In `u` mode a surrogate pair is one code point, so this matches only a lone surrogate. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
/** Deeper than this is handed to the library, which also tells a cycle from a deep value. */
const PLAIN_MAX_DEPTH = 64;

/**
 * The same bytes as `canonicalize` for plain JSON data — objects without
 * toJSON, arrays, well-formed strings, finite numbers, booleans, null — by
 * the library's own steps (keys sorted by `sort()`, strings and numbers by
 * JSON.stringify, undefined and symbol fields left out, undefined and symbol
 * array items as null), built by string concatenation and with a regular
 * expression for lone surrogates instead of the library's per-character
 * loop. Anything else throws NEEDS_LIBRARY. Why: every audit record is sealed
 * through here, ≈ 3.4 % of a router's CPU per message with the library
 * alone, 6–10 → ≈ 4 µs per record (decision 0041). The tests compare the two
 * on generated values.
 */
function plainCanonical(value: unknown, depth: number): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      if (LONE_SURROGATE.test(value)) throw NEEDS_LIBRARY;
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw NEEDS_LIBRARY;
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      throw NEEDS_LIBRARY;
  }
  if (depth >= PLAIN_MAX_DEPTH || typeof (value as { toJSON?: unknown }).toJSON === 'function') throw NEEDS_LIBRARY;
  if (Array.isArray(value)) {
    let text = '[';
    for (let index = 0; index < value.length; index += 1) {
      // A hole (a sparse array) is not JSON data; the library prints it as nothing.
      if (!(index in value)) throw NEEDS_LIBRARY;
      const item: unknown = value[index];
      if (index > 0) text += ',';
      text += item === undefined || typeof item === 'symbol' ? 'null' : plainCanonical(item, depth + 1);
    }
    return `${text}]`;
  }
  const record = value as Record<string, unknown>;
  let text = '{';
  let first = true;
  for (const key of Object.keys(record).sort()) {
    const item = record[key];
    if (item === undefined || typeof item === 'symbol') continue;
    if (LONE_SURROGATE.test(key)) throw NEEDS_LIBRARY;
    text += `${first ? '' : ','}${JSON.stringify(key)}:${plainCanonical(item, depth + 1)}`;
    first = false;
  }
  return `${text}}`;
}

/** sha256 (lowercase hex) of the canonical JSON of `value`. */
export function canonicalDigest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}
