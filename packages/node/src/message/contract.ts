/**
 * The message contract as the router's checks use it. The names, rules and
 * refusal codes are the wire contract's (@dmr/contract, docs/contract.md);
 * what a message that passed the origin checks looks like is the node's.
 * Pure data: no broker, no clock.
 */
/**
 * A message that passed every origin check: typed, normalised metadata, never
 * the payload. The fields a relay also has mean the same here, except
 * `sender`: the authenticated client id, read from `user_id`
 * (`spiffe://<trust domain>/client/<id>`), which RabbitMQ checked equals the
 * user the certificate logged in as.
 */
export interface ValidatedMessage extends RelayedMessage {
  traceparent: string | undefined;
  tracestate: string | undefined;
}

/**
 * A mesh message whose hop chain verified (HopChainVerifier) and whose
 * parties are in order (checkMeshParties), with its metadata checked
 * against this node's view: what the relay path routes and asks the policy
 * about. Every field is covered by the origin's signature.
 */
export interface RelayedMessage {
  /** A lowercase UUID: the replay guard's key, as at the origin. */
  messageId: string;
  /** `dmr-sender`: a client of the origin, or the origin node itself for a report. */
  sender: string;
  /** `dmr-recipient`, a client in the directory. */
  recipient: string;
  /** Where the recipient's queue lives: this node (deliver) or another (forward). */
  recipientHomeNode: string;
  type: string;
  /** The `timestamp` property in milliseconds. */
  timestampMs: number;
  /** The message's `expiration` when set; the router applies `limits.maxTtlMs` when undefined. */
  expirationMs: number | undefined;
  /** Body length in bytes (policy input "size"). */
  sizeBytes: number;
}
