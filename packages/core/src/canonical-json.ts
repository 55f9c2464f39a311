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

/**
 * RFC 8785 text of `value`. Throws a TypeError for what has no canonical
 * form: NaN, ±Infinity, lone surrogates, cycles, and a top-level undefined.
 * Fields whose value is undefined are left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch (error) {
    throw new TypeError(`no canonical JSON: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
  if (text === undefined) throw new TypeError(`value of type ${typeof value} has no JSON form`);
  return text;
}

/** sha256 (lowercase hex) of the canonical JSON of `value`. */
export function canonicalDigest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}
