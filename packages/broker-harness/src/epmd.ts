/**
 * The harness's own epmd (Erlang port mapper). Nodes and CLI calls find it
 * through ERL_EPMD_PORT; the harness starts it in the foreground (so its PID
 * is known, unlike `epmd -daemon`) and stops it after the nodes.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOOPBACK } from '@dmr/broker';
import { DmrError } from '@dmr/core';
import { processRef, signalProcess, waitForExit, type ProcessRef } from './processes.js';

export interface EpmdName {
  name: string;
  port: number;
}

/** Parses the reply to NAMES_REQ: a 4-byte epmd port, then lines `name <n> at port <p>`. */
export function parseNamesReply(reply: Buffer): EpmdName[] {
  const names: EpmdName[] = [];
  for (const line of reply.subarray(4).toString('utf8').split('\n')) {
    const match = /^name (\S+) at port (\d+)$/.exec(line.trim());
    if (match) names.push({ name: match[1] as string, port: Number(match[2]) });
  }
  return names;
}

/** Asks epmd which nodes are registered; fails when epmd does not answer. */
export function epmdNames(port: number, timeoutMs = 2000): Promise<EpmdName[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: LOOPBACK, port }, () => {
      // Length 1, then NAMES_REQ (110).
      socket.end(Buffer.from([0, 1, 110]));
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`epmd on port ${port} did not answer`)));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', (hadError) => {
      if (!hadError) resolve(parseNamesReply(Buffer.concat(chunks)));
    });
  });
}

export async function startEpmd(binary: string, port: number, logFile: string, timeoutMs = 5000): Promise<ProcessRef> {
  const log = openSync(logFile, 'a');
  let exited: string | undefined;
  const child = spawn(binary, ['-port', String(port), '-address', LOOPBACK], {
    // Own process group: a Ctrl-C in the terminal must not reach it before the nodes are stopped.
    detached: true,
    stdio: ['ignore', log, log],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  closeSync(log);
  child.unref();
  child.on('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  child.on('error', (error) => {
    exited = error.message;
  });
  const ref = processRef(child.pid);
  const deadline = Date.now() + timeoutMs;
  while (exited === undefined && Date.now() < deadline) {
    try {
      await epmdNames(port, 500);
      if (ref) return ref;
    } catch {
      await sleep(20);
    }
  }
  if (ref) await stopEpmd(ref);
  throw new DmrError('BROKER_START_FAILED', `the private epmd on port ${port} did not start (${exited ?? 'timeout'})`, {
    hint: `see ${logFile}; the port may have been taken since it was picked, so try again`,
    details: { port, logFile },
  });
}

export async function stopEpmd(ref: ProcessRef | null): Promise<void> {
  if (!signalProcess(ref, 'SIGTERM')) return;
  if (!(await waitForExit([ref], 2000))) signalProcess(ref, 'SIGKILL');
}
