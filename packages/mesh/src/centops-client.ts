/**
 * The few CentOps calls the mesh makes, through the one CentOps client
 * (@dmr/centops-client): mutual TLS with the first admin's certificate, or,
 * for enrolment, server-authenticated TLS only. Server certificates are
 * verified against CentOps' own trust bundle, never the system roots, and
 * pinned to CentOps' SPIFFE id (`spiffe://<td>/centops/api`, the trust
 * domain of the admin certificate): the mesh's node certificate carries
 * `localhost` too, and must not be able to pose as CentOps.
 */
import { readFile } from 'node:fs/promises';
import { CentOpsClient, type HttpMethod, type IssuedCertificateResponse } from '@dmr/centops-client';
import { DmrError, isDmrError } from '@dmr/core';
import { loadClientConfig } from '@dmr/centops';
import { trustDomainFromCertificate } from '@dmr/pki';

const TIMEOUT_MS = 15_000;

export class CentOpsApi {
  readonly #client: CentOpsClient;

  constructor(client: CentOpsClient) {
    this.#client = client;
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
    const api = new CentOpsApi(
      new CentOpsClient({
        apiUrl: config.endpoint,
        enrolUrl: config.enrolEndpoint,
        caPem: ca,
        trustDomain,
        identity: { certPem: cert, keyPem: key },
        timeoutMs: TIMEOUT_MS,
      }),
    );
    return { api, enrol: api, caBundle: config.caBundle };
  }

  get baseUrl(): string {
    return this.#client.apiUrl;
  }

  /** Where nodes and clients enrol: the enrolment listener, not the API (which asks for a client certificate). */
  get enrolUrl(): string {
    return this.#client.enrolUrl ?? this.#client.apiUrl;
  }

  /** A JSON call on the API; CentOps' error answers come back as its DmrError. */
  async call<T>(method: HttpMethod, path: string, body?: unknown): Promise<T> {
    try {
      return (await this.#client.json(method, path, body === undefined ? {} : { body })) as T;
    } catch (error) {
      if (isDmrError(error) && error.code === 'CENTOPS_UNREACHABLE' && error.hint === undefined) {
        throw new DmrError(error.code, error.message, {
          details: error.details,
          hint: 'is the mesh running? see dmr status, and the CentOps log in <dir>/logs/centops.log',
          cause: error,
        });
      }
      throw error;
    }
  }

  /** POST /v1/enroll on the enrolment listener: a one-time token and a CSR (the key stays here). */
  enrolWith(token: string, csrPem: string): Promise<IssuedCertificateResponse> {
    return this.#client.enrol(token, csrPem);
  }
}
