import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { METRICS_DOC, renderMetricsDoc } from './metrics-doc.js';

const REPO = new URL('../../../', import.meta.url);

describe('docs/metrics.md', () => {
  it('is what the registered metrics render (run `npm run docs:metrics` after changing a metric)', async () => {
    const onDisk = await readFile(new URL(METRICS_DOC, REPO), 'utf8');
    assert.equal(onDisk, renderMetricsDoc());
  });

  it('lists every metric of every process, with its labels', () => {
    const doc = renderMetricsDoc();
    for (const name of [
      'dmr_centops_http_request_duration_seconds',
      'dmr_node_config_revision',
      'dmr_link_up',
      'dmr_router_hop_seconds',
      'dmr_bridge_deliveries_total',
    ]) {
      assert.match(doc, new RegExp(`\\| \`${name}\` \\|`));
    }
    assert.match(doc, /\| `dmr_router_messages_rejected_total` \| counter \| `reason` \|/);
  });
});
