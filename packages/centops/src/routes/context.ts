/** What the route plugins share: the store, the CA, and who to tell about a new revision. */
// The swagger plugin's FastifySchema additions (tags, summary, description) for every route plugin.
import type {} from '@fastify/swagger';
import type { CertificateAuthority } from '@dmr/pki';
import type { IssuedIndex } from '../server/auth.js';
import type { CentOpsEvents } from '../server/events.js';
import type { Store } from '../store/index.js';

export interface RouteContext {
  store: Store;
  ca: CertificateAuthority;
  issued: IssuedIndex;
  trustDomain: string;
  /** Called after every change that bumped the revision, so the feed can push without waiting for its poll. */
  onRevision(revision: number): void;
  /** The events of docs/events.md: one log line, one counter, one audit record each. */
  events: CentOpsEvents;
}
