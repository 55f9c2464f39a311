/** How the agent (and the router processes) name a failure: a catalogue code and message for CentOps and the logs. */
import { isDmrError } from '@dmr/core';

const MAX_REASON = 1000;

/** The refusal reason CentOps stores: the catalogue code and message, never secrets or payloads. */
export function refusalReason(error: unknown): { code: string; reason: string } {
  const code = isDmrError(error) ? error.code : 'INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  return { code, reason: `${code}: ${message}`.slice(0, MAX_REASON) };
}

/** Failures that say nothing about the document: retry it rather than give up on it. */
export function isTransient(error: unknown): boolean {
  return (
    isDmrError(error) && ['BROKER_COMMAND_FAILED', 'BROKER_NOT_RUNNING', 'CENTOPS_UNREACHABLE'].includes(error.code)
  );
}
