/**
 * OPA's file digest for signed bundles (bundle/hash.go): raw bytes for Rego
 * and Wasm, but for JSON files a hash of a canonical re-encoding (keys in
 * byte order, no whitespace, Go's string escaping) so that reformatting data
 * does not break a signature. Reproduced exactly because a stock OPA server
 * checks these digests too.
 */
import { createHash } from 'node:crypto';

/** Files OPA parses before hashing: data and the manifest. */
export function isStructuredBundleFile(name: string): boolean {
  return name.endsWith('.json') || name.endsWith('/.manifest') || name === '.manifest';
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Go's encoding/json with SetEscapeHTML(false) differs from JSON.stringify only in escaping U+2028/9. */
function encodePrimitive(value: unknown): string {
  return (JSON.stringify(value) ?? 'null').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

function canonical(value: unknown, out: string[]): void {
  if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item: unknown, index) => {
      if (index > 0) out.push(',');
      canonical(item, out);
    });
    out.push(']');
  } else if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    out.push('{');
    Object.keys(record)
      .sort(byteOrder)
      .forEach((key, index) => {
        if (index > 0) out.push(',');
        out.push(encodePrimitive(key), ':');
        canonical(record[key], out);
      });
    out.push('}');
  } else {
    out.push(encodePrimitive(value));
  }
}

/** The canonical text OPA hashes for a parsed JSON document. */
export function opaCanonicalJson(value: unknown): string {
  const out: string[] = [];
  canonical(value, out);
  return out.join('');
}

/**
 * SHA-256 (hex) of a bundle file as OPA computes it. A structured file that
 * is not JSON yields undefined: it cannot be part of a valid signed bundle.
 */
export function bundleFileDigest(name: string, data: Buffer): string | undefined {
  const hash = createHash('sha256');
  if (isStructuredBundleFile(name)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch {
      return undefined;
    }
    hash.update(opaCanonicalJson(parsed), 'utf8');
  } else {
    hash.update(data);
  }
  return hash.digest('hex');
}
