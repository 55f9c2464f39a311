/**
 * The one catalogue of DMR error codes. The REST API, the CLI and message
 * rejection reasons all speak these codes, so an operator who sees a code in
 * a log, an HTTP body or a delivery report looks it up in one place.
 *
 * `exitCode` is what the CLI exits with; `httpStatus` is what an API answers.
 */
export const ERROR_CATALOGUE = {
  INVALID_ARGUMENT: {
    exitCode: 2,
    httpStatus: 400,
    summary: 'A command-line option or request field is missing or malformed.',
  },
  INVALID_ID: {
    exitCode: 2,
    httpStatus: 400,
    summary: 'An id breaks the id rules: 2–63 of a-z, 0-9 and "-", not starting or ending with "-".',
  },
  NOT_FOUND: { exitCode: 3, httpStatus: 404, summary: 'A file, directory or resource does not exist.' },
  ALREADY_EXISTS: { exitCode: 4, httpStatus: 409, summary: 'Refusing to overwrite something that exists.' },
  CONFLICT: {
    exitCode: 4,
    httpStatus: 409,
    summary: 'The request conflicts with the current state (e.g. the id is already taken by another resource).',
  },
  PRECONDITION_FAILED: {
    exitCode: 4,
    httpStatus: 412,
    summary: 'The resource changed since it was read (its version is not the expected one); re-read and retry.',
  },
  VALIDATION_FAILED: {
    exitCode: 2,
    httpStatus: 422,
    summary: 'The change breaks the registry rules; details.problems lists every problem (path and message).',
  },
  UNAUTHENTICATED: {
    exitCode: 9,
    httpStatus: 401,
    summary: 'No valid client certificate (or other credential) was presented.',
  },
  FORBIDDEN: { exitCode: 9, httpStatus: 403, summary: 'The authenticated identity is not allowed to do this.' },
  HOST_NOT_ALLOWED: {
    exitCode: 9,
    httpStatus: 403,
    summary:
      'The HTTP Host header names a host this listener does not serve (a loopback listener answers only localhost, 127.0.0.1 and [::1]: DNS rebinding protection).',
  },
  TOKEN_INVALID: {
    exitCode: 9,
    httpStatus: 401,
    summary: 'The bootstrap token is unknown, expired or already used; ask an operator for a new one.',
  },
  RATE_LIMITED: {
    exitCode: 11,
    httpStatus: 429,
    summary:
      'Too many requests from this source (enrolment) or for this id (renewal); details.retryAfterSeconds says when to try again.',
    retryable: true,
  },
  REQUEST_TOO_LARGE: {
    exitCode: 2,
    httpStatus: 413,
    summary: 'The request body is larger than this listener accepts (the enrolment listener: 64 KiB).',
  },
  OPERATOR_KEY_ON_SERVER: {
    exitCode: 10,
    httpStatus: 500,
    summary:
      "A private key that is not CentOps' own (e.g. the first admin's) lies in the CentOps directory; CentOps refuses to serve until it is moved off the host.",
  },
  STORE_TOO_NEW: {
    exitCode: 10,
    httpStatus: 500,
    summary: 'The CentOps database was migrated by a newer CentOps version than this one.',
  },
  STORE_UNAVAILABLE: {
    exitCode: 10,
    httpStatus: 503,
    summary: 'The CentOps database cannot be opened or reached.',
    retryable: true,
  },
  CSR_MALFORMED: { exitCode: 5, httpStatus: 400, summary: 'The certificate signing request cannot be parsed.' },
  CSR_SIGNATURE_INVALID: {
    exitCode: 5,
    httpStatus: 400,
    summary: 'The CSR is not signed by the key it carries (proof of possession failed).',
  },
  CSR_MISMATCH: {
    exitCode: 5,
    httpStatus: 400,
    summary: 'The CSR contradicts the requested identity (subject CN, kind or SANs differ).',
  },
  WEAK_KEY: {
    exitCode: 5,
    httpStatus: 400,
    summary: 'The key is not ECDSA P-256/P-384 or RSA with at least 2048 bits.',
  },
  SAN_NOT_ALLOWED: {
    exitCode: 5,
    httpStatus: 400,
    summary: 'A subject alternative name is not allowed by the certificate profile.',
  },
  UNKNOWN_SERIAL: { exitCode: 3, httpStatus: 404, summary: 'No certificate with that serial was issued by this CA.' },
  ALREADY_REVOKED: { exitCode: 4, httpStatus: 409, summary: 'The certificate is already revoked.' },
  CA_INVALID: {
    exitCode: 6,
    httpStatus: 500,
    summary: 'The CA directory is incomplete or its files do not belong together.',
  },
  KEY_INVALID: {
    exitCode: 5,
    httpStatus: 400,
    summary: 'A private key cannot be parsed (expected a PEM private key, e.g. from `dmr pki keygen`).',
  },
  CRL_INVALID: {
    exitCode: 5,
    httpStatus: 400,
    summary: 'A certificate revocation list cannot be parsed or its signature does not verify.',
  },
  CERTIFICATE_INVALID: {
    exitCode: 5,
    httpStatus: 400,
    summary: 'A certificate cannot be parsed or does not chain to the trusted roots.',
  },
  RENEWAL_GRACE_EXPIRED: {
    exitCode: 9,
    httpStatus: 403,
    summary:
      'The certificate expired longer ago than CentOps renews with a proof of its key (renewalGrace); enrol again with a one-time token.',
  },
  CERTIFICATE_REVOKED: {
    exitCode: 5,
    httpStatus: 410,
    summary:
      'The certificate is revoked (on the CentOps CRL or in its records); for the directory: every current certificate of the id is.',
  },
  PRINCIPAL_DENIED: {
    exitCode: 9,
    httpStatus: 403,
    summary: 'The client or node is on the CentOps denylist: its certificate is not served and must not be trusted.',
  },
  CONFIG_SIGNATURE_INVALID: {
    exitCode: 5,
    httpStatus: 422,
    summary:
      'A signed node configuration fails verification (signature, signer chain or identity); details.check names the check.',
  },
  CONFIG_INVALID: {
    exitCode: 5,
    httpStatus: 422,
    summary:
      'A node configuration is malformed, for another node, or older than the one applied; details.check names the check.',
  },
  BROKER_START_FAILED: { exitCode: 7, httpStatus: 503, summary: 'A RabbitMQ node did not come up.' },
  BROKER_NOT_RUNNING: { exitCode: 7, httpStatus: 503, summary: 'The RabbitMQ node is not running.' },
  BROKER_ALREADY_RUNNING: {
    exitCode: 4,
    httpStatus: 409,
    summary: 'RabbitMQ nodes started from this directory are still running.',
  },
  BROKER_COMMAND_FAILED: { exitCode: 7, httpStatus: 502, summary: 'A RabbitMQ CLI or management call failed.' },
  MESH_START_FAILED: {
    exitCode: 7,
    httpStatus: 503,
    summary: 'A component of the local mesh (`dmr up`) did not start or stopped; the message names it and its log.',
  },
  DEPENDENCY_MISSING: {
    exitCode: 8,
    httpStatus: 500,
    summary: 'A program DMR needs (rabbitmq-server, openssl, opa) is not installed.',
  },
  CLI_CONFIG_INVALID: {
    exitCode: 2,
    httpStatus: 400,
    summary:
      'The CLI config file (`dmr ctl --config`, DMR_CONFIG, ~/.dmr/config.yaml) is missing or malformed; the message names the field.',
  },
  CENTOPS_UNREACHABLE: {
    exitCode: 11,
    httpStatus: 503,
    summary: 'CentOps could not be reached (connection refused, unknown host, timeout or TLS handshake failure).',
  },
  SERVER_IDENTITY_MISMATCH: {
    exitCode: 9,
    httpStatus: 502,
    summary:
      "A server's certificate chains to the trusted roots but does not carry the SPIFFE id the client expects (CentOps: spiffe://<td>/centops/api; a broker: spiffe://<td>/node/<id>); details.expected and details.presented name both. Check the URL and port.",
  },
  POLICY_INVALID: {
    exitCode: 12,
    httpStatus: 422,
    summary: "Rego fails `opa check --strict` or `opa test`; details.output is OPA's output verbatim.",
  },
  POLICY_BUNDLE_INVALID: {
    exitCode: 12,
    httpStatus: 422,
    summary:
      'A policy bundle is malformed, tampered with, wrongly signed or older than the active one; details.check names the check.',
  },
  POLICY_UNAVAILABLE: {
    exitCode: 12,
    httpStatus: 503,
    summary: 'No policy can decide: no bundle is active, or the OPA sidecar cannot be reached or fails to evaluate.',
    retryable: true,
  },
  // Message rejection reasons (docs/contract.md "Message contract"): the router puts one of these on a refused
  // message and in the sender's delivery report; packages/node/README.md "Message checks" lists the rules.
  MESSAGE_ID_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The message has no message_id property, or it is not a UUID.',
  },
  SENDER_MISSING: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The message has no user_id property (RabbitMQ checks the sender only when user_id is set).',
  },
  SENDER_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      "The message's user_id is not the SPIFFE id of a client of this trust domain (spiffe://<trust domain>/client/<id>): " +
      "set user_id to the client certificate's SPIFFE id, its URI SAN, which is the user the broker logged it in as.",
  },
  SENDER_UNKNOWN: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      "The message's sender is not a client of the node it sent through (at the origin: user_id is not a client of this node; at a later hop: dmr-sender is not a client homed at dmr-origin).",
  },
  SENDER_INACTIVE: { exitCode: 13, httpStatus: 403, summary: 'The sending client is suspended or revoked.' },
  SENDER_DENIED: { exitCode: 13, httpStatus: 403, summary: 'The sending client is on the denylist.' },
  RECIPIENT_MISSING: { exitCode: 13, httpStatus: 422, summary: 'The message has no dmr-recipient header.' },
  RECIPIENT_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The dmr-recipient header is not a valid id (2–63 of a-z, 0-9 and "-").',
  },
  RECIPIENT_UNKNOWN: { exitCode: 13, httpStatus: 422, summary: 'The dmr-recipient is not a client known to CentOps.' },
  RECIPIENT_INACTIVE: { exitCode: 13, httpStatus: 403, summary: 'The recipient client is suspended or revoked.' },
  RECIPIENT_DENIED: { exitCode: 13, httpStatus: 403, summary: 'The recipient client is on the denylist.' },
  TYPE_MISSING: { exitCode: 13, httpStatus: 422, summary: 'The message has no type property.' },
  TYPE_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The type property is not a letter followed by up to 63 of A-Z, a-z, 0-9, ".", "_" and "-".',
  },
  TIMESTAMP_MISSING: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The message has no timestamp property, or it is not whole POSIX seconds.',
  },
  TIMESTAMP_SKEW: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      "The message timestamp is ahead of the node's clock by more than limits.timestampSkewMs (the sender's clock is wrong).",
  },
  EXPIRATION_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The expiration property is not a whole number of milliseconds.',
  },
  EXPIRATION_TOO_LONG: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The expiration property exceeds the node policy cap (limits.maxTtlMs).',
  },
  MESSAGE_TOO_LARGE: {
    exitCode: 13,
    httpStatus: 413,
    summary: 'The message body is larger than limits.maxMessageBytes.',
  },
  VERSION_UNSUPPORTED: { exitCode: 13, httpStatus: 422, summary: 'The dmr-version header is missing or not 1.' },
  HEADER_RESERVED: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'A client set a header only DMR may set (dmr-sender, dmr-origin, dmr-hops, dmr-sig).',
  },
  HEADERS_TOO_LARGE: {
    exitCode: 13,
    httpStatus: 413,
    summary:
      'The AMQP header table is larger than limits.maxHeaderBytes once encoded; send only dmr-recipient, dmr-version, trace context and small app-* headers.',
  },
  ROUTING_HEADER_FORBIDDEN: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      'The message carries a CC or BCC header (in any letter case), which RabbitMQ treats as extra routing keys; send one message per recipient without them.',
  },
  MESSAGE_UNENCODABLE: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      'The router could not re-encode the message for delivery (a property the AMQP encoder refuses); send it again with ordinary properties.',
  },
  SENDER_RATE_LIMITED: {
    exitCode: 13,
    httpStatus: 429,
    summary:
      'The sender sent faster than limits.senderRatePerSecond (burst limits.senderBurst) allows on this router; send again more slowly.',
  },
  SENDER_QUOTA_EXCEEDED: {
    exitCode: 13,
    httpStatus: 429,
    summary:
      'The sender holds its whole share of the replay window (limits.maxIdsPerSender unexpired message ids); send again once older ids expire, or ask an operator to raise the share.',
  },
  MESSAGE_REPLAYED: {
    exitCode: 13,
    httpStatus: 409,
    summary: 'A message with this message_id was already seen within the replay window (limits.dedupWindowMs).',
  },
  REPLAY_WINDOW_FULL: {
    exitCode: 13,
    httpStatus: 503,
    summary: 'The replay guard holds its maximum of message ids; new messages are refused until ids expire.',
  },
  HOP_SIGNATURE_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      "The dmr-sig origin signature or a dmr-hops entry's signature is missing, malformed, not by the node it names (certificate chain, SPIFFE id, CRL) or does not verify for the message; details.check names the check. A node on the path altered the message or signs with a wrong certificate: find it from the refusing node's audit record.",
  },
  ORIGIN_DENIED: {
    exitCode: 13,
    httpStatus: 403,
    summary: "The message's origin node (dmr-origin) is on the denylist.",
  },
  HOPS_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      "The dmr-hops header is malformed, or its entries do not link up (entry 0 not by dmr-origin, an entry not addressed to the next, the last not by the previous hop or not addressed to this node); details.check names the check. A node on the path altered or misrouted the message: find it from the refusing node's audit record.",
  },
  HOP_LOOP: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      'The message came back to a node it already passed (dmr-hops names this node, or one node twice); check the CentOps routes between the nodes in the hops.',
  },
  HOP_LIMIT_EXCEEDED: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      'The message crossed more node-to-node links than limits.maxHops allows (default 8), or would with the next one; check the CentOps routes, or raise the limit.',
  },
  PEER_UNKNOWN: {
    exitCode: 13,
    httpStatus: 403,
    summary:
      "A mesh message's user_id is not spiffe://<trust-domain>/node/<id> of a configured, not denylisted link peer of this node; check the links in CentOps and the peer's status.",
  },
  HOP_NODE_DENIED: {
    exitCode: 13,
    httpStatus: 403,
    summary:
      'A node the message passed (an entry of dmr-hops after the origin) is on the denylist; resend it once routes avoid that node.',
  },
  REPORT_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      'A node sent something other than a delivery report, or a delivery report whose dmr-sender is not its dmr-origin node or whose recipient is not a client; the origin node is misbehaving: tell its operators.',
  },
  POLICY_DENIED: {
    exitCode: 13,
    httpStatus: 403,
    summary: 'The policy denied the message; the report carries the policy reasons (e.g. NO_GRANT) and revision.',
  },
  RECIPIENT_UNREACHABLE: {
    exitCode: 13,
    httpStatus: 503,
    summary: "The recipient's home node has no route from this node (or relaying is not available here).",
  },
  RECIPIENT_QUEUE_FULL: {
    exitCode: 13,
    httpStatus: 503,
    summary:
      "The recipient's queue is at its length limit (limits.queueMaxLength). Routers hold such messages and try again (decision 0028) instead of refusing them; the code remains for reports of older nodes.",
  },
  MESSAGE_EXPIRED: {
    exitCode: 13,
    httpStatus: 410,
    summary:
      "The message expired (its expiration or limits.maxTtlMs) before the recipient took it, or its timestamp is older than the node's maximum message age (limits.dedupWindowMs − limits.timestampSkewMs).",
  },
  DELIVERY_LIMIT_EXCEEDED: {
    exitCode: 13,
    httpStatus: 422,
    summary: 'The recipient returned the message more often than limits.deliveryLimit allows; it was dead-lettered.',
  },
  RECIPIENT_REFUSED: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      "The recipient rejected the message instead of taking it (the HTTP bridge after its endpoint refused it or never took it, or an SDK client for a misaddressed, tampered or unhandled message); it was dead-lettered to the recipient's dead-letter queue. The recipient's node audits it as a failed delivery.",
  },
  // SDK (packages/sdk): what a client application sees.
  NODE_UNREACHABLE: {
    exitCode: 7,
    httpStatus: 503,
    summary:
      'The SDK could not connect to the DMR node (network, TLS handshake, unknown certificate or missing vhost permission).',
    retryable: true,
  },
  MESSAGE_NOT_ACCEPTED: {
    exitCode: 13,
    httpStatus: 503,
    summary:
      'The DMR node did not confirm the message: a negative publisher confirm (its ingress is full, DMR is slowing senders down) or no confirm in time; send again with the same message id after details.retryAfterSeconds.',
    retryable: true,
  },
  CLIENT_CLOSED: {
    exitCode: 1,
    httpStatus: 503,
    summary: 'The SDK client was closed: the call was refused, or a send was still unconfirmed when close() gave up.',
  },
  MESSAGE_MISADDRESSED: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      "A message or delivery report in a client's queue whose dmr-recipient is missing or not that client's id; the SDK and the bridge dead-letter it into the client's DLQ without handling it.",
  },
  PROTECTION_INVALID: {
    exitCode: 13,
    httpStatus: 422,
    summary:
      'An end-to-end protected message does not decrypt, its signature does not verify, or it is not bound to this message.',
  },
  NODE_CONFIG_INVALID: {
    exitCode: 2,
    httpStatus: 400,
    summary: 'The node run configuration file is invalid; the details list every problem.',
  },
  BRIDGE_CONFIG_INVALID: {
    exitCode: 2,
    httpStatus: 400,
    summary:
      'The HTTP bridge configuration (file or DMR_BRIDGE_* environment variables) is invalid; the details list every problem.',
  },
  ENROLMENT_FAILED: {
    exitCode: 11,
    httpStatus: 502,
    summary: 'The node could not obtain its certificate from CentOps (token refused, CSR refused or CentOps down).',
  },
  FAULT_SCENARIO_FAILED: {
    exitCode: 7,
    httpStatus: 500,
    summary:
      'A fault scenario (`npm run faults`) could not inject its fault, or a component did not come back after it; the message names the scenario, the step and the log to read.',
  },
  ENDPOINT_DELIVERY_FAILED: {
    exitCode: 7,
    httpStatus: 502,
    summary:
      "The HTTP bridge's endpoint did not take a received message (a 4xx other than 408/429, or no 2xx within deliveryAttempts); the bridge dead-lettered it to its client's dead-letter queue.",
  },
  AUDIT_CHECKPOINT_INVALID: {
    exitCode: 14,
    httpStatus: 422,
    summary:
      'An audit checkpoint is malformed, not signed by its writer, or not consistent with the last checkpoint CentOps holds for that log (a fork).',
  },
  AUDIT_LOG_BROKEN: {
    exitCode: 14,
    httpStatus: 422,
    summary:
      'An audit log does not prove itself: a record was edited, deleted or reordered, the log is cut short of a checkpoint, two checkpoints disagree, or a writer is unknown; the message names the first bad record.',
  },
  MESSAGE_NOT_FOUND: {
    exitCode: 3,
    httpStatus: 404,
    summary:
      "No audit record names this message id in what was read (the nodes' dmr.audit streams or the export files, within the record limit and time window).",
  },
  INTERNAL: { exitCode: 1, httpStatus: 500, summary: 'An unexpected failure; the message says where.' },
} as const satisfies Record<string, CatalogueEntry>;

/**
 * `retryable`: the same request may succeed later unchanged (an overloaded or
 * unreachable dependency), so callers retry it with back-off; every other
 * code needs a change first.
 */
interface CatalogueEntry {
  exitCode: number;
  httpStatus: number;
  summary: string;
  retryable?: true;
}

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface DmrErrorOptions {
  /** Machine-readable context (never secrets or payload content). */
  details?: Record<string, unknown>;
  /** What the user should do next. */
  hint?: string;
  cause?: unknown;
}

export class DmrError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: DmrErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DmrError';
    this.code = code;
    this.details = options.details ?? {};
    this.hint = options.hint;
  }

  get exitCode(): number {
    return ERROR_CATALOGUE[this.code].exitCode;
  }

  get httpStatus(): number {
    return ERROR_CATALOGUE[this.code].httpStatus;
  }

  /** The same call may succeed later unchanged: retry with back-off (details.retryAfterSeconds when known). */
  get retryable(): boolean {
    const entry: CatalogueEntry = ERROR_CATALOGUE[this.code];
    return entry.retryable === true;
  }

  /** The wire shape shared by the REST API and `-o json` CLI output. */
  toJSON(): { error: { code: ErrorCode; message: string; details: Record<string, unknown>; hint?: string } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        details: this.details,
        ...(this.hint === undefined ? {} : { hint: this.hint }),
      },
    };
  }
}

export function isDmrError(value: unknown): value is DmrError {
  return value instanceof DmrError;
}

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CATALOGUE, value);
}
