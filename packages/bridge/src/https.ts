/** The bridge's own listener: plain HTTP on loopback, or HTTPS (optionally mutual TLS) from server.tls. */
import { readFile } from 'node:fs/promises';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import { DmrError } from '@dmr/core';
import type { BridgeConfig } from './config.js';

export /** The listener's HTTPS options from server.tls: read once at start (a renewed certificate needs a restart). */
async function httpsOptions(config: BridgeConfig): Promise<HttpsServerOptions | undefined> {
  const tls = config.server.tls;
  if (tls === undefined) return undefined;
  const read = async (path: string, field: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      throw new DmrError('BRIDGE_CONFIG_INVALID', `server.tls.${field}: cannot read ${path}`, {
        details: { problems: [`/server/tls/${field}: cannot read ${path}`] },
        cause: error,
      });
    }
  };
  const [cert, key, ca] = await Promise.all([
    read(tls.certFile, 'certFile'),
    read(tls.keyFile, 'keyFile'),
    tls.clientCaFile === undefined ? Promise.resolve(undefined) : read(tls.clientCaFile, 'clientCaFile'),
  ]);
  return {
    cert,
    key,
    minVersion: 'TLSv1.2',
    // Mutual TLS: no certificate of clientCaFile, no handshake (so no request at all).
    ...(ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: true }),
  };
}
