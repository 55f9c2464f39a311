/**
 * When a router process should stop: SIGTERM or SIGINT (an operator, or the
 * agent's supervisor), or — when it was spawned with an IPC channel, as
 * `dmr node run` and the test fixture do — the channel closing. The channel
 * closes whenever the parent is gone, also after a SIGKILL or a crash that
 * gave it no chance to stop its children, so a router never runs on without
 * the agent that supervises it (nobody would stop it, and it would keep
 * consuming with a configuration nobody updates).
 */
export type StopReason = 'SIGTERM' | 'SIGINT' | 'parent gone';

export function stopRequested(target: NodeJS.Process = process): Promise<StopReason> {
  return new Promise<StopReason>((resolve) => {
    target.once('SIGTERM', () => resolve('SIGTERM'));
    target.once('SIGINT', () => resolve('SIGINT'));
    if (target.channel !== undefined && target.channel !== null) {
      target.once('disconnect', () => resolve('parent gone'));
      // Watching the channel must not be what keeps the process alive.
      target.channel.unref();
    }
  });
}
