/**
 * The little of tar (ustar + PAX path records) that OPA bundles need: regular
 * files only, gzip-compressed. Written here rather than taken from npm because
 * bundles are security-relevant input and 100 lines are easier to audit than
 * a dependency tree; anything unexpected (links, devices) is refused.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { DmrError } from '@dmr/core';

export interface TarFile {
  /** Path inside the archive, always with a leading "/" as OPA writes it. */
  name: string;
  data: Buffer;
}

const BLOCK = 512;
/** Bundles are small; a decompression bomb is refused before it fills memory. */
export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

function invalid(message: string): DmrError {
  return new DmrError('POLICY_BUNDLE_INVALID', `policy bundle refused (format): ${message}`, {
    details: { check: 'format' },
  });
}

function field(header: Buffer, offset: number, length: number): string {
  const raw = header.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

function octal(header: Buffer, offset: number, length: number): number {
  const text = field(header, offset, length).trim();
  if (!/^[0-7]+$/.test(text)) throw invalid('a tar header has a malformed number');
  return parseInt(text, 8);
}

/** PAX extended header records: "<len> key=value\n". Only `path` matters here. */
function paxPath(data: Buffer): string | undefined {
  let rest = data.toString('utf8');
  let path: string | undefined;
  while (rest.length > 0) {
    const space = rest.indexOf(' ');
    const length = parseInt(rest.slice(0, space), 10);
    if (space <= 0 || !Number.isFinite(length) || length <= space) throw invalid('malformed PAX header');
    const record = rest.slice(space + 1, length - 1);
    if (record.startsWith('path=')) path = record.slice(5);
    rest = rest.slice(length);
  }
  return path;
}

function normaliseName(name: string): string {
  const trimmed = name.replace(/^\.?\/+/, '');
  if (trimmed === '' || trimmed.split('/').some((part) => part === '..' || part === '')) {
    throw invalid(`unsafe file name ${JSON.stringify(name)}`);
  }
  return `/${trimmed}`;
}

export function readTarGz(archive: Buffer): TarFile[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(archive, { maxOutputLength: MAX_BUNDLE_BYTES });
  } catch (error) {
    throw invalid(`not a gzip archive within ${MAX_BUNDLE_BYTES} bytes (${(error as Error).message})`);
  }
  const files: TarFile[] = [];
  const seen = new Set<string>();
  let offset = 0;
  let nextName: string | undefined;
  while (offset + BLOCK <= tar.length) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every((byte) => byte === 0)) break;
    const size = octal(header, 124, 12);
    const type = String.fromCharCode(header[156] ?? 0);
    const start = offset + BLOCK;
    if (start + size > tar.length) throw invalid('truncated archive');
    const data = Buffer.from(tar.subarray(start, start + size));
    offset = start + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      nextName = paxPath(data);
      continue;
    }
    if (type === 'g' || type === '5') continue; // global PAX header, directory
    if (type !== '0' && type !== '\0') throw invalid(`entry type ${JSON.stringify(type)} is not a regular file`);
    const prefix = field(header, 345, 155);
    const name = normaliseName(
      nextName ?? (prefix === '' ? field(header, 0, 100) : `${prefix}/${field(header, 0, 100)}`),
    );
    nextName = undefined;
    if (seen.has(name)) throw invalid(`${name} appears twice`);
    seen.add(name);
    files.push({ name, data });
  }
  return files;
}

function header(name: string, size: number, type: string): Buffer {
  const block = Buffer.alloc(BLOCK, 0);
  block.write(name, 0, 100, 'utf8');
  block.write('0000644\0', 100, 'ascii');
  block.write('0000000\0', 108, 'ascii');
  block.write('0000000\0', 116, 'ascii');
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  block.write('00000000000\0', 136, 'ascii'); // mtime 0: the same input gives the same bytes
  block.write(type, 156, 'ascii');
  block.write('ustar\0', 257, 'ascii');
  block.write('00', 263, 'ascii');
  block.fill(' ', 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

function padded(data: Buffer): Buffer[] {
  const rest = data.length % BLOCK;
  return rest === 0 ? [data] : [data, Buffer.alloc(BLOCK - rest, 0)];
}

/** Deterministic: same files in the same order give the same archive. */
export function writeTarGz(files: readonly TarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    const name = normaliseName(file.name);
    if (Buffer.byteLength(name) > 99) {
      const record = ` path=${name}\n`;
      let length = record.length + 1;
      while (`${length}${record}`.length !== length) length = `${length}${record}`.length;
      const pax = Buffer.from(`${length}${record}`, 'utf8');
      parts.push(header('PaxHeader', pax.length, 'x'), ...padded(pax));
    }
    parts.push(header(name.slice(0, 99), file.data.length, '0'), ...padded(file.data));
  }
  parts.push(Buffer.alloc(BLOCK * 2, 0));
  return gzipSync(Buffer.concat(parts));
}
