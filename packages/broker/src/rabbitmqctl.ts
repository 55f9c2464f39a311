import { execFile } from 'node:child_process';
import { DmrError } from '@dmr/core';

export interface CtlResult {
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs `rabbitmqctl -n <node> ...` with the node's own environment: the CLI
 * must share the node's HOME (cookie), epmd port and CLI distribution ports.
 */
export function rabbitmqctl(
  ctl: string,
  env: Record<string, string>,
  nodename: string,
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<CtlResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      ctl,
      ['-n', nodename, ...args],
      { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const ms = performance.now() - started;
        if (error) {
          const output = `${stderr}\n${stdout}`.trim().split('\n').slice(-15).join('\n');
          reject(
            new DmrError('BROKER_COMMAND_FAILED', `rabbitmqctl ${args.join(' ')} failed on ${nodename}: ${output}`, {
              details: { node: nodename, args: [...args], exitCode: error.code ?? null, timedOut: error.killed },
              cause: error,
            }),
          );
        } else {
          resolve({ stdout, stderr, ms });
        }
      },
    );
  });
}
