/**
 * The few CentOps calls the mesh makes, over HTTPS with the first admin's
 * certificate (mutual TLS) or, for enrolment, server-authenticated TLS only.
 * Server certificates are verified against CentOps' own trust bundle, never
 * the system roots, and pinned to CentOps' SPIFFE id
 * (`spiffe://<td>/centops/api`, the trust domain of the admin certificate):
 * the mesh's node certificate carries `localhost` too, and must not be able
 * to pose as CentOps.
 */
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { DmrError, isErrorCode } from '@dmr/core';
import { loadClientConfig } from '@dmr/centops';
import {
  centOpsServerCheck,
  isServerIdentityMismatch,
  trustDomainFromCertificate,
  type CheckServerIdentity,
} from '@dmr/pki';

export interface HttpsJsonOptions {
  ca: string;
  cert?: string;
  key?: string;
  /** CentOps must present `spiffe://<trustDomain>/centops/api`. */
  trustDomain: string;
  timeoutMs?: number;
}

export class CentOpsApi {
  readonly #base: string;
  readonly #tls: HttpsJsonOptions;
  readonly #checkServer: CheckServerIdentity;

  constructor(baseUrl: string, tls: HttpsJsonOptions) {
    this.#base = baseUrl.replace(/\/+$/, '');
    this.#tls = tls;
    this.#checkServer = centOpsServerCheck(tls.trustDomain);
  }

  /** The API with the admin credentials `dmr centops init` wrote (admin.yaml). */
  static async admin(adminConfigFile: string): Promise<{ api: CentOpsApi; enrol: CentOpsApi; caBundle: string }> {
    const config = await loadClientConfig(adminConfigFile);
    const [ca, cert, key] = await Promise.all([
      readFile(config.caBundle, 'utf8'),
      readFile(config.clientCertificate, 'utf8'),
      readFile(config.clientKey, 'utf8'),
    ]);
    const trustDomain = trustDomainFromCertificate(cert);
    if (trustDomain === undefined) {
      throw new DmrError('MESH_START_FAILED', `${config.clientCertificate} has no SPIFFE id`, {
        hint: 'the admin certificate of `dmr centops init` names the trust domain; remove the mesh directory and start again',
      });
    }
    return {
      api: new CentOpsApi(config.endpoint, { ca, cert, key, trustDomain }),
      enrol: new CentOpsApi(config.enrolEndpoint, { ca, trustDomain }),
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
          checkServerIdentity: this.#checkServer,
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
          isServerIdentityMismatch(error)
            ? error
            : new DmrError('CENTOPS_UNREACHABLE', `cannot reach CentOps at ${new URL(url).origin}: ${error.message}`, {
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
