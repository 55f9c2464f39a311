/**
 * Just enough DER reading to name and date a CRL. The harness must not depend
 * on the `openssl` binary or on how `@dmr/pki` happens to represent CRLs, and
 * the few fields it needs sit at fixed places in the structure.
 */

export interface DerElement {
  tag: number;
  /** Offset of the tag byte: `bytes.subarray(start, end)` is the whole encoding. */
  start: number;
  contentStart: number;
  end: number;
}

export class DerError extends Error {
  override name = 'DerError';
}

export function readElement(bytes: Uint8Array, offset: number): DerElement {
  if (offset + 2 > bytes.length) throw new DerError(`truncated DER at offset ${offset}`);
  const tag = bytes[offset] as number;
  // Multi-byte tags (low bits all set) never occur in the X.509 structures read here.
  if ((tag & 0x1f) === 0x1f) throw new DerError(`unsupported high tag number at offset ${offset}`);
  const first = bytes[offset + 1] as number;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0 || count > 4) throw new DerError(`unsupported length encoding at offset ${offset}`);
    if (offset + 2 + count > bytes.length) throw new DerError(`truncated DER length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (bytes[offset + 2 + i] as number);
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > bytes.length) throw new DerError(`DER element at offset ${offset} runs past the end`);
  return { tag, start: offset, contentStart, end };
}

export function readChildren(bytes: Uint8Array, parent: DerElement): DerElement[] {
  const children: DerElement[] = [];
  for (let offset = parent.contentStart; offset < parent.end;) {
    const child = readElement(bytes, offset);
    children.push(child);
    offset = child.end;
  }
  return children;
}

export function content(bytes: Uint8Array, element: DerElement): Uint8Array {
  return bytes.subarray(element.contentStart, element.end);
}

export function encoding(bytes: Uint8Array, element: DerElement): Uint8Array {
  return bytes.subarray(element.start, element.end);
}

/** Encodes a tag and its content; lengths up to 4 GiB are enough for names. */
export function encodeElement(tag: number, body: Uint8Array): Uint8Array {
  let header: number[];
  if (body.length < 0x80) {
    header = [tag, body.length];
  } else {
    const lengthBytes: number[] = [];
    for (let rest = body.length; rest > 0; rest = Math.floor(rest / 256)) lengthBytes.unshift(rest % 256);
    header = [tag, 0x80 | lengthBytes.length, ...lengthBytes];
  }
  const out = new Uint8Array(header.length + body.length);
  out.set(header, 0);
  out.set(body, header.length);
  return out;
}

export const TAG = {
  INTEGER: 0x02,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Reads UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), the only forms RFC 5280 allows. */
export function readTime(bytes: Uint8Array, element: DerElement): Date {
  const text = Buffer.from(content(bytes, element)).toString('latin1');
  let match: RegExpExecArray | null;
  let year: number;
  if (element.tag === TAG.UTC_TIME) {
    match = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!match) throw new DerError(`malformed UTCTime "${text}"`);
    const yy = Number(match[1]);
    // RFC 5280: two-digit years 50–99 are 19xx, 00–49 are 20xx.
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (element.tag === TAG.GENERALIZED_TIME) {
    match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!match) throw new DerError(`malformed GeneralizedTime "${text}"`);
    year = Number(match[1]);
  } else {
    throw new DerError(`expected a time, found tag 0x${element.tag.toString(16)}`);
  }
  const [, , month, day, hour, minute, second] = match.map(Number) as number[];
  return new Date(Date.UTC(year, (month as number) - 1, day, hour, minute, second));
}
