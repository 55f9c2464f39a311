/**
 * `GET /v1/health`: the checks behind it. The broker connection is the
 * client's state; the certificate must be valid now (its remaining lifetime
 * is also a metric); CentOps counts as up when it answers HTTPS at all,
 * presenting its own SPIFFE id.
 */
import { request as httpsRequest } from 'node:https';
import { isDmrError } from '@dmr/core';
import type { CheckServerIdentity } from '@dmr/pki';
import { describeCertificate } from '@dmr/sdk';
import type { BridgeMetrics } from './metrics.js';

export interface HealthCheck {
  ok: boolean;
  detail: string;
}

export interface Health {
  /** `ok`: ready; `degraded`: ready, CentOps unreachable; `down`: not ready (503). */
  status: 'ok' | 'degraded' | 'down';
  /** Absent for a caller that did not authenticate while authentication is configured. */
  checks?: { broker: HealthCheck; certificate: HealthCheck; centops: HealthCheck | { ok: null; detail: string } };
}

/** Whether the certificate in use is valid now; sets the expiry metric on the way. */
export function certificateHealth(certificatePem: string, metrics: BridgeMetrics): HealthCheck {
  try {
    const info = describeCertificate(certificatePem);
    const now = Date.now();
    const left = info.notAfter.getTime() - now;
    metrics.certificateExpiry.set(Math.round(left / 1000));
    const valid = info.notBefore.getTime() <= now && left > 0;
    return {
      ok: valid,
      detail: valid
        ? `valid until ${info.notAfter.toISOString()}`
        : `not valid now (${info.notBefore.toISOString()} – ${info.notAfter.toISOString()})`,
    };
  } catch (error) {
    return { ok: false, detail: (error as Error).message };
  }
}

/** Whether CentOps answers HTTPS (any HTTP status counts: it is up); cached for 10 s. */
export class CentOpsProbe {
  readonly #url: string;
  /** The client's TLS material at the time of each probe (the certificate changes after a renewal). */
  readonly #identity: () => { ca: string; cert: string; key: string };
  /** CentOps of this client's trust domain. */
  readonly #checkServer: CheckServerIdentity | undefined;
  #cache: { at: number; check: HealthCheck } | undefined;

  constructor(
    centopsUrl: string,
    identity: () => { ca: string; cert: string; key: string },
    checkServer: CheckServerIdentity | undefined,
  ) {
    this.#url = `${centopsUrl}/v1/pki/trust-bundle`;
    this.#identity = identity;
    this.#checkServer = checkServer;
  }

  async check(): Promise<HealthCheck> {
    const cached = this.#cache;
    if (cached !== undefined && Date.now() - cached.at < 10_000) return cached.check;
    const { ca, cert, key } = this.#identity();
    const check = await new Promise<HealthCheck>((resolve) => {
      const request = httpsRequest(
        this.#url,
        {
          method: 'GET',
          ca,
          cert,
          key,
          timeout: 2_000,
          // Only CentOps counts as CentOps being up (its SPIFFE id, not just the chain).
          ...(this.#checkServer === undefined ? {} : { checkServerIdentity: this.#checkServer }),
        },
        (response) => {
          response.resume();
          resolve({ ok: true, detail: `reachable (HTTP ${response.statusCode ?? 0})` });
        },
      );
      request.on('timeout', () => request.destroy(new Error('timed out after 2 s')));
      request.on('error', (error: NodeJS.ErrnoException) =>
        resolve({
          ok: false,
          detail: isDmrError(error) ? `${error.code}: ${error.message}` : `unreachable: ${error.code ?? error.message}`,
        }),
      );
      request.end();
    });
    this.#cache = { at: Date.now(), check };
    return check;
  }
}
