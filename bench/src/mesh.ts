/**
 * Rows e and f: the DMR path across the mesh (client on node A → client on
 * node B over one link; f: A → B → C, two hops), measured against row s.
 */
import type { BenchContext, RowSetup } from './context.js';
import type { RowId } from './options.js';

export async function setupMeshRows(_context: BenchContext, rows: readonly RowId[]): Promise<RowSetup> {
  if (!rows.includes('e') && !rows.includes('f')) return { ok: true, drivers: [], close: async () => undefined };
  return { ok: false, unavailable: 'the routers do not forward across nodes on this branch yet' };
}
