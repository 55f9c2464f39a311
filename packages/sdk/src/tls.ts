/** The client's TLS identity: PEM strings, or files read once at connect (and again after a renewal). */
import { readFile } from 'node:fs/promises';
import { DmrError } from '@dmr/core';

export interface TlsPem {
  /** Client certificate, leaf first, preferably with its intermediate (what CentOps returns as `chain`). */
  cert: string;
  /** The client's private key (PEM). */
  key: string;
  /** Trust bundle: the roots the node's server certificate must chain to. */
  ca: string;
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export type TlsOptions = TlsPem | TlsFiles;

async function readPem(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new DmrError('NOT_FOUND', `cannot read the ${what} file ${path}`, { details: { path }, cause: error });
  }
}

export async function loadTls(options: TlsOptions): Promise<TlsPem> {
  if ('cert' in options) return { cert: options.cert, key: options.key, ca: options.ca };
  const [cert, key, ca] = await Promise.all([
    readPem(options.certFile, 'certificate'),
    readPem(options.keyFile, 'private key'),
    readPem(options.caFile, 'trust bundle'),
  ]);
  return { cert, key, ca };
}
