/**
 * Registry-wide operations: batch apply (all or nothing, with a dry-run
 * diff), the control-plane audit log, and the status overview (the
 * revision and what each node reports running).
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { ResourceKind, ResourceSpecs } from '../model.js';
import { READERS, WRITERS, actorOf, requireRole } from '../server/auth.js';
import { sendPage } from '../server/http.js';
import type { AuditKind, AuditQuery as StoreAuditQuery, Change } from '../store/index.js';
import type { RouteContext } from './context.js';
import { ApplyItem, AuditQuery, errorResponses } from './schemas.js';

interface ApplyItemBody {
  op?: 'create' | 'update' | 'upsert' | 'delete';
  kind: ResourceKind;
  spec?: Record<string, unknown>;
  id?: string;
  expectedVersion?: number;
}

/** An API document to a store change. Shapes are the store's to judge (it reports `changes[i].spec.x`). */
function toChange(item: ApplyItemBody): Change {
  const op = item.op ?? 'upsert';
  if (op === 'delete') {
    const id = item.id ?? (typeof item.spec?.id === 'string' ? item.spec.id : '');
    return { op, kind: item.kind, id, expectedVersion: item.expectedVersion };
  }
  return {
    op,
    kind: item.kind,
    spec: (item.spec ?? {}) as unknown as ResourceSpecs[ResourceKind],
    expectedVersion: item.expectedVersion,
  } as Change;
}

export function operationsRoutes(context: RouteContext): FastifyPluginAsync {
  const { store, trustDomain } = context;
  return async (app) => {
    app.post(
      '/v1/apply',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['apply'],
          summary: 'apply a batch of changes, all or nothing',
          description:
            'Each item is {op?, kind, spec} (op defaults to upsert) or {op: delete, kind, id}. A batch that breaks ' +
            'any rule answers 422 with every problem and changes nothing. ?dryRun=true returns the diff only.',
          querystring: Type.Object({ dryRun: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
          body: Type.Array(ApplyItem, { minItems: 1, maxItems: 10_000 }),
          response: errorResponses(412, 422),
        },
      },
      async (request) => {
        const { dryRun } = request.query as { dryRun?: boolean };
        const items = request.body as ApplyItemBody[];
        const result = await store.applyChanges(items.map(toChange), actorOf(request.principal, trustDomain), {
          dryRun: dryRun === true,
        });
        if (!result.dryRun && result.revision !== result.previousRevision) context.onRevision(result.revision);
        return result;
      },
    );

    app.get(
      '/v1/audit',
      {
        preHandler: requireRole(...READERS),
        schema: { tags: ['audit'], summary: 'control-plane audit records, oldest first', querystring: AuditQuery },
      },
      async (request, reply) => {
        const query = request.query as StoreAuditQuery & { kind?: string };
        return sendPage(reply, await store.listAudit({ ...query, kind: query.kind as AuditKind | undefined }));
      },
    );

    app.get(
      '/v1/status',
      {
        preHandler: requireRole(...READERS),
        schema: { tags: ['status'], summary: 'the registry revision and the revision each node runs' },
      },
      async () => {
        const [revision, reports] = await Promise.all([store.revision(), store.listNodeStatus()]);
        const byNode = new Map(reports.map((report) => [report.nodeId, report]));
        const nodes: Array<Record<string, unknown>> = [];
        let cursor: string | undefined;
        do {
          const page = await store.list('Node', { limit: 1000, cursor });
          for (const node of page.items) {
            const report = byNode.get(node.spec.id);
            nodes.push({
              id: node.spec.id,
              appliedRevision: report?.appliedRevision ?? null,
              upToDate: report?.appliedRevision === revision,
              refused: report?.refused ?? null,
              policyRevision: report?.policyRevision ?? null,
              reportedAt: report?.reportedAt ?? null,
            });
          }
          cursor = page.nextCursor;
        } while (cursor !== undefined);
        return { revision, schemaVersion: store.schemaVersion, nodes };
      },
    );
  };
}
