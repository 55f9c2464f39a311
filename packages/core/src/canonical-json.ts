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

/** sha256 (lowercase hex) of the canonical JSON of `value`. */
export function canonicalDigest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}
