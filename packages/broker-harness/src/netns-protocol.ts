/** Messages between NetnsPartition and its namespace holder (netns-holder-main.ts), checked on both sides. */

export type HolderRequest =
  { op: 'ip'; id: number; commands: string[][] } | { op: 'listen'; id: number; host: string; port: number };

export type HolderReply =
  | { op: 'ready'; id: 0 }
  | { op: 'done'; id: number }
  | { op: 'listening'; id: number; port: number }
  | { op: 'failed'; id: number; message: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Arguments to `ip` only: names, addresses, numbers and keywords, never anything a shell or `ip -batch` would read.
const IP_ARGUMENT = /^[A-Za-z0-9./:_-]{1,64}$/;

export function isHolderRequest(value: unknown): value is HolderRequest {
  if (!isRecord(value) || !Number.isSafeInteger(value.id)) return false;
  if (value.op === 'ip') {
    return (
      Array.isArray(value.commands) &&
      value.commands.every(
        (command) =>
          Array.isArray(command) &&
          command.length > 0 &&
          command.every((arg) => typeof arg === 'string' && IP_ARGUMENT.test(arg)),
      )
    );
  }
  if (value.op === 'listen') {
    return (
      typeof value.host === 'string' &&
      /^\d{1,3}(\.\d{1,3}){3}$/.test(value.host) &&
      Number.isInteger(value.port) &&
      (value.port as number) >= 0 &&
      (value.port as number) <= 65_535
    );
  }
  return false;
}

export function isHolderReply(value: unknown): value is HolderReply {
  if (!isRecord(value) || !Number.isSafeInteger(value.id)) return false;
  switch (value.op) {
    case 'ready':
    case 'done':
      return true;
    case 'listening':
      return Number.isInteger(value.port);
    case 'failed':
      return typeof value.message === 'string';
    default:
      return false;
  }
}
