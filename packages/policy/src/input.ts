/**
 * The input side of the decision contract, mirrored three times on purpose:
 * here (the node validates at the edge, so invalid input is denied without
 * calling OPA), in input.schema.json (for other implementers) and in
 * rego/dmr/validate (so an OPA sidecar or `opa eval` decides the same). The
 * agreement test holds the three to the same answers.
 *
 * Unknown fields are invalid: a node never sends something a policy might
 * silently ignore. Labels are the open-ended part (string → string).
 */

export interface PolicyPrincipal {
  /** Client id (the certificate identity). */
  id: string;
  organisation: string;
  roles: string[];
  labels: Record<string, string>;
}

export interface PolicyMessage {
  /** The AMQP message_id. */
  id: string;
  /** The AMQP `type`, e.g. ChatMessage. */
  type: string;
  /** Payload size in bytes. */
  size: number;
  /** Absolute expiry (RFC 3339), when the sender set one. */
  expiresAt?: string;
  /** Remaining time to live in milliseconds, when the sender set one. */
  ttl?: number;
}

export interface PolicyHop {
  /** The node the message entered DMR at. */
  origin: string;
  /** The node it came from; absent at the origin. */
  previous?: string;
  /** Hops so far: 0 at the origin. */
  count: number;
}

export interface PolicyInput {
  sender: PolicyPrincipal;
  recipient: PolicyPrincipal;
  message: PolicyMessage;
  hop: PolicyHop;
  /** The node deciding. */
  node: { id: string };
}

/** One broken rule: a JSON pointer and what is wrong there. */
export interface InputProblem {
  path: string;
  message: string;
}

const TIMESTAMP = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$/;

type Problems = InputProblem[];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The shape of each object in the input: its required and optional keys (built once, not per decision). */
const SHAPES = {
  principal: { required: ['id', 'organisation', 'roles', 'labels'], optional: [] },
  message: { required: ['id', 'type', 'size'], optional: ['expiresAt', 'ttl'] },
  hop: { required: ['origin', 'count'], optional: ['previous'] },
  input: { required: ['sender', 'recipient', 'message', 'hop', 'node'], optional: [] },
  node: { required: ['id'], optional: [] },
} as const satisfies Record<string, { required: readonly string[]; optional: readonly string[] }>;

type Shape = (typeof SHAPES)[keyof typeof SHAPES];

function keys(value: unknown, path: string, shape: Shape, problems: Problems): boolean {
  const required: readonly string[] = shape.required;
  const optional: readonly string[] = shape.optional;
  if (!isRecord(value)) {
    problems.push({ path, message: 'must be an object' });
    return false;
  }
  for (const key of required) {
    if (!(key in value)) problems.push({ path: `${path}/${key}`, message: 'is required' });
  }
  for (const key of Object.keys(value)) {
    if (!required.includes(key) && !optional.includes(key)) {
      problems.push({ path: `${path}/${key}`, message: 'is not part of the decision input' });
    }
  }
  return true;
}

function name(value: unknown, path: string, problems: Problems): void {
  if (value === undefined) return; // reported by keys()
  if (typeof value !== 'string' || value === '') problems.push({ path, message: 'must be a non-empty string' });
}

function count(value: unknown, path: string, problems: Problems): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    problems.push({ path, message: 'must be a non-negative integer' });
  }
}

function principal(value: unknown, path: string, problems: Problems): void {
  if (!keys(value, path, SHAPES.principal, problems)) return;
  const p = value as Record<string, unknown>;
  name(p.id, `${path}/id`, problems);
  name(p.organisation, `${path}/organisation`, problems);
  if (p.roles !== undefined) {
    if (!Array.isArray(p.roles)) problems.push({ path: `${path}/roles`, message: 'must be an array' });
    else p.roles.forEach((role: unknown, index) => name(role, `${path}/roles/${index}`, problems));
  }
  if (p.labels !== undefined) {
    if (!isRecord(p.labels)) problems.push({ path: `${path}/labels`, message: 'must be an object' });
    else {
      for (const [key, label] of Object.entries(p.labels)) {
        if (key === '') problems.push({ path: `${path}/labels`, message: 'label names must be non-empty' });
        if (typeof label !== 'string') problems.push({ path: `${path}/labels/${key}`, message: 'must be a string' });
      }
    }
  }
}

function message(value: unknown, problems: Problems): void {
  if (!keys(value, '/message', SHAPES.message, problems)) return;
  const m = value as Record<string, unknown>;
  name(m.id, '/message/id', problems);
  name(m.type, '/message/type', problems);
  count(m.size, '/message/size', problems);
  if (m.expiresAt !== undefined && (typeof m.expiresAt !== 'string' || !TIMESTAMP.test(m.expiresAt))) {
    problems.push({ path: '/message/expiresAt', message: 'must be an RFC 3339 timestamp' });
  }
  count(m.ttl, '/message/ttl', problems);
}

function hop(value: unknown, problems: Problems): void {
  if (!keys(value, '/hop', SHAPES.hop, problems)) return;
  const h = value as Record<string, unknown>;
  name(h.origin, '/hop/origin', problems);
  name(h.previous, '/hop/previous', problems);
  count(h.count, '/hop/count', problems);
}

/** Every way `value` breaks the input contract; empty when it is a valid PolicyInput. */
export function policyInputProblems(value: unknown): InputProblem[] {
  const problems: Problems = [];
  if (!keys(value, '', SHAPES.input, problems)) return problems;
  const input = value as Record<string, unknown>;
  if (input.sender !== undefined) principal(input.sender, '/sender', problems);
  if (input.recipient !== undefined) principal(input.recipient, '/recipient', problems);
  if (input.message !== undefined) message(input.message, problems);
  if (input.hop !== undefined) hop(input.hop, problems);
  if (input.node !== undefined && keys(input.node, '/node', SHAPES.node, problems)) {
    name((input.node as Record<string, unknown>).id, '/node/id', problems);
  }
  return problems;
}

export function isPolicyInput(value: unknown): value is PolicyInput {
  return policyInputProblems(value).length === 0;
}
