/** Test-only child for child.test.ts: echoes its config, counts commands, fails on request. */
import { serveChild } from './child.js';

serveChild(async (config) => {
  if (typeof config === 'object' && config !== null && 'fail' in config) throw new Error('asked to fail');
  let commands = 0;
  return {
    info: { config, pid: process.pid },
    command: async (command) => {
      if (command === 'boom') throw new Error('boom');
      commands += 1;
      return { echo: command, commands };
    },
    stop: async () => ({ commands }),
  };
});
