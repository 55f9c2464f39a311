/**
 * Consumes one bootstrap token from its own thread and connection, so the
 * concurrency test races real connections (better-sqlite3 is synchronous:
 * two connections in one thread would wait on each other, not race).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isDmrError } from '@dmr/core';
import { openStore } from '../store.js';

const { location, token, actor, now } = workerData as { location: string; token: string; actor: string; now: string };
const store = await openStore(location, { now: () => new Date(now) });
try {
  const consumed = await store.consumeBootstrapToken(token, actor);
  parentPort?.postMessage({ ok: true, id: consumed.id });
} catch (error) {
  parentPort?.postMessage({ ok: false, code: isDmrError(error) ? error.code : String(error) });
} finally {
  await store.close();
}
