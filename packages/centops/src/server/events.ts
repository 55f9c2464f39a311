/**
 * CentOps' events (docs/events.md): certificates issued, renewed and
 * revoked, policy and denylist changes, revisions published, and what nodes
 * report (configuration applied or refused, a certificate installed or
 * expiring). Every one goes through core's EventRecorder: one log line, one
 * `dmr_events_total` increment, one entry in CentOps' audit log (the Merkle
 * log of decision 0034).
 *
 * CentOps' own events were already audited by the store, in the same
 * transaction as the change (a revocation without its record cannot
 * happen), so they are announced with `recorded` after the change commits;
 * a node's report has no other record, so `emit` appends it
 * (`node.event`, actor = the node's SPIFFE id).
 */
import {
  EventRecorder,
  type DmrEvent,
  type EventFields,
  type EventKind,
  type EventLogger,
  type PrincipalKind,
} from '@dmr/core';
import { normaliseSerial, type RevocationReason } from '@dmr/pki';
import type { Store } from '../store/index.js';
import type { CertificateEvents, IssuedVia } from './certificates.js';
import type { CentOpsMetrics } from './metrics.js';

/** The kinds a node may report (EVENT_CATALOGUE origin `node`). */
export const NODE_EVENT_KINDS = [
  'config.applied',
  'config.refused',
  'certificate.installed',
  'certificate.expiring',
] as const satisfies readonly EventKind[];

export interface IssuedCertificate {
  id: string;
  serial: string;
  notAfter: string;
}

export class CentOpsEvents implements CertificateEvents {
  readonly #metrics: CentOpsMetrics;
  readonly #recorder: EventRecorder;
  #published = -1;

  constructor(options: {
    metrics: CentOpsMetrics;
    logger: EventLogger;
    store: Store;
    trustDomain: string;
    now?: () => Date;
  }) {
    this.#metrics = options.metrics;
    const { store, trustDomain } = options;
    this.#recorder = new EventRecorder({
      logger: options.logger,
      counter: options.metrics.events,
      // Only node reports are emitted (CentOps' own events are audited by the store with the change).
      audit: async (event) => {
        const { node } = event.fields as { node: string };
        await store.appendAudit({
          actor: `spiffe://${trustDomain}/node/${node}`,
          action: 'node.event',
          kind: 'Node',
          id: node,
          detail: { event: event.kind, at: event.at, ...event.fields },
        });
      },
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  }

  issued(kind: PrincipalKind | 'operator', via: IssuedVia, certificate?: IssuedCertificate): void {
    this.#metrics.issued(kind, via);
    if (certificate === undefined) return;
    const common = {
      principal: kind,
      id: certificate.id,
      serial: normaliseSerial(certificate.serial),
      notAfter: new Date(certificate.notAfter).toISOString(),
    };
    if (via === 'renew') this.#recorder.recorded('certificate.renewed', common);
    else this.#recorder.recorded('certificate.issued', { ...common, via });
  }

  tokenUsed(kind: PrincipalKind): void {
    this.#metrics.tokenUsed(kind);
  }

  revoked(kind: string, id: string, serials: readonly string[], reason: RevocationReason): void {
    const principal = kind as EventFields<'certificate.revoked'>['principal'];
    for (const serial of serials) {
      this.#recorder.recorded('certificate.revoked', { principal, id, serial: normaliseSerial(serial), reason });
    }
  }

  denylisted(kind: 'client' | 'node', id: string, revision: number): void {
    this.denylist('add', kind, id, revision);
  }

  denylist(op: 'add' | 'remove', principal: 'client' | 'node', id: string, revision: number): void {
    this.#recorder.recorded('denylist.changed', { op, principal, id, revision });
  }

  policyChanged(version: number, digest: string, revision: number): void {
    this.#recorder.recorded('policy.changed', { version, digest, revision });
  }

  /** A new revision reached the feed (RouteContext.onRevision): once per revision this replica published. */
  published(revision: number): void {
    if (revision <= this.#published) return;
    this.#published = revision;
    this.#recorder.recorded('config.published', { revision });
  }

  /** A node's report (already checked by parseEvent and the route): appended to the audit log, then logged and counted. */
  async reported(event: DmrEvent): Promise<void> {
    await this.#recorder.append(event);
  }
}
