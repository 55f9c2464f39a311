/**
 * The agent's side of the links (docs/mesh-links.md "What the reconciler
 * does"): the TLS copies the broker's shovels log in to peers with, the
 * drains of removed links across reconciles, and the periodic reading of
 * the links' state, restarting a link that says `running` while its
 * unacknowledged messages do not move (trap 2). The agent decides when
 * (its timers, one change to the broker at a time); this decides what.
 */
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { ManagementClient, QueueDepth } from '@dmr/broker';
import { vhostName, type LinkStatus, type NodeConfig } from '@dmr/contract';
import {
  DrainTracker,
  StuckLinkWatch,
  installLinkTlsFiles,
  linkPeerOf,
  linkShovelName,
  readLinkStatuses,
  removeUnusedLinkFiles,
  tlsFilesOf,
  type LinkOptions,
} from '../reconciler/index.js';
import { brokerCaFile } from './broker-tls.js';
import type { NodeIdentity } from './identity.js';
import { refusalReason } from './refusal.js';

export interface LinkKeeperOptions {
  /** The broker's own certificate file (`broker.tls.certFile`): link copies go to `links/` beside it. */
  brokerCertFile: string | undefined;
  logger: Logger;
  /** How long a removed link's queue must look empty before it goes (DrainTracker; default 12 s). */
  drainGraceMs?: number;
  /** How long a running link may hold unacknowledged messages that do not move before a restart (default 30 s). */
  stuckLinkMs?: number;
}

export class LinkKeeper {
  /** Removed links still draining, kept across reconciles. */
  readonly drains: DrainTracker;
  readonly #stuck: StuckLinkWatch;
  readonly #dir: string | undefined;
  readonly #logger: Logger;

  constructor(options: LinkKeeperOptions) {
    this.#logger = options.logger;
    this.#dir = options.brokerCertFile === undefined ? undefined : join(dirname(options.brokerCertFile), 'links');
    this.drains = new DrainTracker(options.drainGraceMs === undefined ? {} : { graceMs: options.drainGraceMs });
    this.#stuck = new StuckLinkWatch(options.stuckLinkMs === undefined ? {} : { stuckAfterMs: options.stuckLinkMs });
  }

  /** What the reconciler needs to keep shovels: the node's TLS copies; undefined without broker.tls or identity. */
  async options(config: NodeConfig, identity: NodeIdentity | undefined): Promise<LinkOptions | undefined> {
    if (this.#dir === undefined || identity === undefined) {
      if (config.links.length > 0) {
        this.#logger.warn(
          { links: config.links.map((link) => link.peer) },
          'links configured but no broker.tls: no shovel can present the node certificate, links are not kept',
        );
      }
      return undefined;
    }
    const tls = await installLinkTlsFiles(this.#dir, {
      chainPem: identity.chainPem,
      privateKeyPem: identity.privateKeyPem,
      // What the broker trusts for its own clients: CentOps' roots and the intermediates, which issue peers too.
      trustPem: brokerCaFile(identity.trustBundlePem, identity.chainPem),
    });
    return { tls };
  }

  /** Old copies go once no shovel names them (a draining link keeps the files it started with). */
  async removeUnusedFiles(management: ManagementClient, vhost: string, links: LinkOptions): Promise<void> {
    if (this.#dir === undefined) return;
    try {
      const inUse = Object.values(links.tls);
      for (const definition of (await management.listShovelDefinitions(vhost)).values()) {
        inUse.push(...tlsFilesOf(definition));
      }
      const removed = await removeUnusedLinkFiles(this.#dir, inUse);
      if (removed.length > 0) this.#logger.info({ removed }, 'old link TLS files removed');
    } catch (error) {
      this.#logger.warn({ err: refusalReason(error) }, 'removing old link TLS files failed');
    }
  }

  /**
   * The links' state now, restarting the stuck ones, with every queue's depth read on the way (the agent's
   * dead-letter gauges); undefined when the broker could not be read.
   */
  async inspect(
    management: ManagementClient,
    config: NodeConfig,
  ): Promise<{ links: LinkStatus[]; queues: QueueDepth[] } | undefined> {
    const vhost = vhostName(config.node.id);
    let read;
    try {
      read = await readLinkStatuses(management, vhost, config);
    } catch (error) {
      this.#logger.debug({ err: refusalReason(error) }, 'reading the links failed');
      return undefined;
    }
    const now = Date.now();
    const states = new Map(read.shovels.map((shovel) => [linkPeerOf(shovel.name), shovel.state]));
    const depths = new Map(read.queues.map((queue) => [linkPeerOf(queue.name), queue]));
    for (const link of read.links) {
      if (
        link.state === 'draining' ||
        !this.#stuck.observe(link.peer, states.get(link.peer), depths.get(link.peer), now)
      )
        continue;
      this.#logger.warn({ peer: link.peer }, 'link runs but its unacknowledged messages do not move: restarting it');
      await management.restartShovel(vhost, linkShovelName(link.peer)).catch((error: unknown) => {
        this.#logger.warn({ peer: link.peer, err: refusalReason(error) }, 'restarting the link failed');
      });
    }
    this.#stuck.retain(new Set(read.links.map((link) => link.peer)));
    return { links: read.links, queues: read.queues };
  }
}
