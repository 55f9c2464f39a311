/**
 * Canonical JSON for signing, byte-identical to @dmr/core's canonicalJson
 * (RFC 8785: sorted keys, no whitespace) for the JSON data a node
 * configuration holds, but built on JSON.stringify with a key-sorting
 * replacer and with shared parts spliced in once: at 100 nodes a change
 * means 100 documents of tens of kilobytes, and the recursive string
 * building of a general implementation is several times slower. The tests
 * compare the two.
 *
 * JavaScript puts integer-like keys ("0", "42") first in any object, so a
 * rebuilt object cannot hold them in sorted order; a document with such a
 * key (only possible in labels) takes the slow path.
 */
import { canonicalJson } from '@dmr/core';

const INDEX_KEY = /^(0|[1-9]\d*)$/;
const SLOW = Symbol('integer-like key');

function sortKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  // No prototype: on a plain object, assigning a "__proto__" key (possible in labels) would set the prototype instead.
  const sorted = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(value).sort()) {
    if (INDEX_KEY.test(key)) throw SLOW;
    sorted[key] = (value as Record<string, unknown>)[key];
  }
  return sorted;
}

function serialise(value: unknown): string {
  try {
    const text = JSON.stringify(value, sortKeys) as string | undefined;
    if (text === undefined) throw new TypeError(`value of type ${typeof value} has no JSON form`);
    return text;
  } catch (error) {
    if (error === SLOW) return canonicalJson(value);
    throw error;
  }
}

/** Values many documents share, with their canonical JSON once it is known (null until first use). */
const shared = new WeakMap<object, string | null>();

/**
 * Marks `value` as shared by many documents (the directory of one revision is
 * in all 100 of them): its canonical JSON is computed once, on first use,
 * and spliced into every document that holds it as a top-level field. The
 * value must not change afterwards.
 */
export function shareCanonical<T extends object>(value: T): T {
  if (!shared.has(value)) shared.set(value, null);
  return value;
}

function fieldJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return serialise(value);
  const known = shared.get(value);
  if (known === undefined) return serialise(value);
  if (known !== null) return known;
  const text = serialise(value);
  shared.set(value, text);
  return text;
}

export function canonicalDocument(value: unknown): string {
  // A plain object is assembled field by field, so that shared fields are spliced in, not serialised again.
  if (value === null || typeof value !== 'object' || Array.isArray(value) || shared.has(value)) return fieldJson(value);
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return serialise(value);
  const keys = Object.keys(value).sort();
  if (keys.some((key) => INDEX_KEY.test(key))) return serialise(value);
  const fields: string[] = [];
  for (const key of keys) {
    const field = (value as Record<string, unknown>)[key];
    // What JSON.stringify leaves out of an object.
    if (field === undefined || typeof field === 'function' || typeof field === 'symbol') continue;
    fields.push(`${JSON.stringify(key)}:${fieldJson(field)}`);
  }
  return `{${fields.join(',')}}`;
}
