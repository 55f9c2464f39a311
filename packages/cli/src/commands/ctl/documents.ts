/**
 * Multi-document YAML ↔ the API's apply items. A document is
 *
 *   apiVersion: dmr/v1     # optional
 *   kind: Client           # or client / clients
 *   op: delete             # optional: create | update | upsert (default) | delete
 *   spec: { id: …, … }
 *
 * Only the envelope is checked here (every problem, with its document
 * number); the specs are the server's to judge, so there is one set of
 * rules and the CLI cannot drift from it.
 */
import { isDocument, parseAllDocuments, stringify } from 'yaml';
import { DmrError } from '@dmr/core';
import type { ResourceKind, Stored } from '@dmr/centops';
import { kindInfo } from './resources.js';

export const APPLY_OPS = ['create', 'update', 'upsert', 'delete'] as const;
export type ApplyOp = (typeof APPLY_OPS)[number];

export interface ApplyItem {
  op?: ApplyOp;
  kind: ResourceKind;
  spec?: Record<string, unknown>;
  id?: string;
}

export interface ParsedDocument {
  /** 1-based position in the file, counting empty documents, so it matches what the user sees. */
  document: number;
  item: ApplyItem;
}

const ENVELOPE = ['apiVersion', 'kind', 'op', 'spec'];

export function parseDocuments(text: string, source: string): ParsedDocument[] {
  const problems: Array<{ path: string; message: string }> = [];
  const parsed: ParsedDocument[] = [];
  const documents = parseAllDocuments(text);
  if (!Array.isArray(documents)) {
    // parseAllDocuments returns an EmptyStream for input with no documents at all.
    throw new DmrError('VALIDATION_FAILED', `${source} holds no documents`, {
      details: { problems: [{ path: source, message: 'holds no documents' }] },
    });
  }
  documents.forEach((doc, index) => {
    const at = `documents[${index + 1}]`;
    if (!isDocument(doc)) return;
    if (doc.errors.length > 0) {
      for (const error of doc.errors) problems.push({ path: at, message: `YAML: ${error.message.split('\n')[0]}` });
      return;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return; // an empty document (a trailing ---) is nothing to apply
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push({ path: at, message: 'must be a mapping with kind and spec' });
      return;
    }
    const raw = value as Record<string, unknown>;
    for (const key of Object.keys(raw)) {
      if (!ENVELOPE.includes(key))
        problems.push({ path: `${at}.${key}`, message: 'is not a known field (apiVersion, kind, op, spec)' });
    }
    if (raw.apiVersion !== undefined && raw.apiVersion !== 'dmr/v1') {
      problems.push({ path: `${at}.apiVersion`, message: `must be dmr/v1, not ${JSON.stringify(raw.apiVersion)}` });
    }
    let kind: ResourceKind | undefined;
    if (typeof raw.kind !== 'string')
      problems.push({ path: `${at}.kind`, message: 'is required (Organisation, Client, Node or Link)' });
    else {
      try {
        kind = kindInfo(raw.kind).kind;
      } catch {
        problems.push({ path: `${at}.kind`, message: `"${raw.kind}" is not one of Organisation, Client, Node, Link` });
      }
    }
    let op: ApplyOp | undefined;
    if (raw.op !== undefined) {
      if (typeof raw.op === 'string' && (APPLY_OPS as readonly string[]).includes(raw.op)) op = raw.op as ApplyOp;
      else problems.push({ path: `${at}.op`, message: `must be one of ${APPLY_OPS.join(', ')}` });
    }
    const spec = raw.spec;
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
      problems.push({ path: `${at}.spec`, message: 'is required and must be a mapping' });
      return;
    }
    if (kind === undefined) return;
    const specRecord = spec as Record<string, unknown>;
    const item: ApplyItem =
      op === 'delete'
        ? { op, kind, id: typeof specRecord.id === 'string' ? specRecord.id : '' }
        : { ...(op === undefined ? {} : { op }), kind, spec: specRecord };
    parsed.push({ document: index + 1, item });
  });
  if (problems.length > 0) {
    throw new DmrError(
      'VALIDATION_FAILED',
      `${source}: ${problems.length} problem(s) in the documents; nothing was sent`,
      {
        details: { problems },
      },
    );
  }
  if (parsed.length === 0) {
    throw new DmrError('VALIDATION_FAILED', `${source} holds no documents`, {
      details: { problems: [{ path: source, message: 'holds no documents with kind and spec' }] },
    });
  }
  return parsed;
}

/**
 * The server names problems by batch position (`changes[2].spec.homeNode`);
 * add the document number and resource so they can be found in the file.
 */
export function locateProblems(error: DmrError, documents: readonly ParsedDocument[], source: string): DmrError {
  const problems = error.details.problems;
  if (error.code !== 'VALIDATION_FAILED' || !Array.isArray(problems)) return error;
  const located = problems.map((problem: unknown) => {
    const { path, message } = problem as { path?: unknown; message?: unknown };
    if (typeof path !== 'string') return problem;
    const match = /^changes\[(\d+)\]/.exec(path);
    const document = match ? documents[Number(match[1])] : undefined;
    if (document === undefined) return { path, message };
    const id = document.item.spec?.id ?? document.item.id;
    const name = `${document.item.kind}/${typeof id === 'string' && id !== '' ? id : '?'}`;
    return { path: `${path} (${source} document ${document.document}, ${name})`, message, document: document.document };
  });
  return new DmrError('VALIDATION_FAILED', `apply refused: ${located.length} problem(s); nothing was changed`, {
    details: { ...error.details, problems: located },
    hint: error.hint ?? 'fix every listed problem and apply again; the batch is all or nothing',
  });
}

/** Apply-able documents for stored resources: `export` prints these and `apply` reads them back unchanged. */
export function renderDocuments(resources: ReadonlyArray<Stored<ResourceKind>>): string {
  return resources
    .map((resource) => stringify({ apiVersion: 'dmr/v1', kind: resource.kind, spec: resource.spec }, { lineWidth: 0 }))
    .map((text) => `---\n${text}`)
    .join('');
}
