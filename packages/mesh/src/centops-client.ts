/**
 * The few CentOps calls the mesh makes, over HTTPS with the first admin's
 * certificate (mutual TLS) or, for enrolment, server-authenticated TLS only.
 * Server certificates are verified against CentOps' own trust bundle, never
 * the system roots.
 */
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { DmrError, isErrorCode } from '@dmr/core';
import { loadClientConfig } from '@dmr/centops';

export interface HttpsJsonOptions {
  ca: string;
  cert?: string;
  key?: string;
  timeoutMs?: number;
}

export class CentOpsApi {
  readonly #base: string;
  readonly #tls: HttpsJsonOptions;

  constructor(baseUrl: string, tls: HttpsJsonOptions) {
    this.#base = baseUrl.replace(/\/+$/, '');
    this.#tls = tls;
  }

  /** The API with the admin credentials `dmr centops init` wrote (admin.yaml). */
  static async admin(adminConfigFile: string): Promise<{ api: CentOpsApi; enrol: CentOpsApi; caBundle: string }> {
    const config = await loadClientConfig(adminConfigFile);
    const [ca, cert, key] = await Promise.all([
      readFile(config.caBundle, 'utf8'),
      readFile(config.clientCertificate, 'utf8'),
      readFile(config.clientKey, 'utf8'),
    ]);
    return {
      api: new CentOpsApi(config.endpoint, { ca, cert, key }),
      enrol: new CentOpsApi(config.enrolEndpoint, { ca }),
      caBundle: config.caBundle,
    };
  }

  get baseUrl(): string {
    return this.#base;
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.#base}${path}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          headers,
          ca: this.#tls.ca,
          cert: this.#tls.cert,
          key: this.#tls.key,
          minVersion: 'TLSv1.2',
          timeout: this.#tls.timeoutMs ?? 15_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (error: Error & { code?: string }) =>
        reject(
          new DmrError('CENTOPS_UNREACHABLE', `cannot reach CentOps at ${new URL(url).origin}: ${error.message}`, {
            details: { url, code: error.code ?? null },
            hint: 'is the mesh running? see dmr status, and the CentOps log in <dir>/logs/centops.log',
            cause: error,
          }),
        ),
      );
      req.end(payload);
    });
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (status >= 200 && status < 300) return json as T;
    const error = (json as { error?: { code?: unknown; message?: unknown; details?: unknown; hint?: unknown } })?.error;
    if (error !== undefined && typeof error.code === 'string' && isErrorCode(error.code)) {
      throw new DmrError(error.code, typeof error.message === 'string' ? error.message : `HTTP ${status}`, {
        details: {
          ...(typeof error.details === 'object' && error.details !== null
            ? (error.details as Record<string, unknown>)
            : {}),
          status,
        },
        hint: typeof error.hint === 'string' ? error.hint : undefined,
      });
    }
    throw new DmrError('INTERNAL', `${method} ${path} answered HTTP ${status}: ${text.slice(0, 200)}`, {
      details: { status },
    });
  }
}
