/**
 * The process that holds a NetnsPartition's network namespace: started by
 * `unshare --net`, so the namespace exists exactly as long as this process
 * (and the sockets opened in it) do. It runs `ip` inside the namespace and
 * opens listeners there for its owner, which it reaches only through the
 * IPC channel node's child_process gives it. When that channel closes — the
 * owner stopped it, exited or was SIGKILLed — it exits, and the kernel
 * removes the namespace and both ends of its veth pair: nothing to find and
 * delete afterwards, even after a crash.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { isHolderRequest, type HolderReply, type HolderRequest } from './netns-protocol.js';

function reply(message: HolderReply, handle?: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(message, handle, {}, () => resolve());
  });
}

function ip(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve();
    });
  });
}

async function handle(request: HolderRequest): Promise<void> {
  try {
    if (request.op === 'ip') {
      for (const args of request.commands) await ip(args);
      await reply({ op: 'done', id: request.id });
      return;
    }
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(request.port, request.host, () => resolve());
    });
    const address = server.address();
    const port = address !== null && typeof address === 'object' ? address.port : 0;
    await reply({ op: 'listening', id: request.id, port }, server);
    // The owner accepts on it from now on; this copy would take a share of the connections.
    server.close();
  } catch (error) {
    await reply({ op: 'failed', id: request.id, message: error instanceof Error ? error.message : String(error) });
  }
}

if (!process.send) {
  process.stderr.write('netns-holder-main.js is started by NetnsPartition with an IPC channel\n');
  process.exit(2);
}
process.on('disconnect', () => process.exit(0));
process.on('message', (message: unknown) => {
  if (isHolderRequest(message)) void handle(message);
});
void reply({ op: 'ready', id: 0 });
