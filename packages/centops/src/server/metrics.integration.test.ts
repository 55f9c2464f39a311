/**
 * CentOps' /metrics over a real server (SQLite, real TLS on the API and
 * enrolment listeners): the plain-HTTP metrics listener serves the request
 * histogram by route template, the certificate and token counters moved by
 * a real enrolment, and the gauges read from the store and the hub.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { client, node, organisation } from '../store/test-support/fixtures.js';
import { startEmptyCentOps, type EmptyCentOps } from './test-support/empty-centops.js';

const ACTOR = 'spiffe://dmr.test/operator/admin';

async function scrape(centops: EmptyCentOps): Promise<string> {
  const url = centops.server.metricsUrl;
  assert.ok(url !== undefined, 'metricsListen was configured');
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  return response.text();
}

/** The value of one series, by its exact name and labels as exposed. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('CentOps /metrics', () => {
  let centops: EmptyCentOps;
  before(async () => {
    centops = await startEmptyCentOps({
      label: 'centops-metrics',
      configure: (config) => {
        config.metricsListen = { host: '127.0.0.1', port: 0 };
      },
    });
    await centops.store.create('Organisation', organisation('police'), ACTOR);
    await centops.store.create('Node', node('dmr-tallinn'), ACTOR);
    await centops.store.create('Client', client('police-bot', 'police', 'dmr-tallinn'), ACTOR);
  });
  after(() => centops?.close());

  it('counts an enrolment: one token spent, one client certificate issued', async () => {
    const before = await scrape(centops);
    assert.equal(sample(before, 'dmr_centops_enrolment_tokens_used_total{kind="client"}'), undefined);
    await centops.enrol('police-bot');
    const text = await scrape(centops);
    assert.equal(sample(text, 'dmr_centops_enrolment_tokens_used_total{kind="client"}'), 1);
    assert.equal(sample(text, 'dmr_centops_certificates_issued_total{kind="client",via="enrol"}'), 1);
  });

  it('times requests by listener, method, route template and status, never by the URL sent', async () => {
    assert.equal((await centops.api('/v1/clients/police-bot')).status, 200);
    assert.equal((await centops.api('/v1/no-such-route/secret-looking-id')).status, 404);
    const text = await scrape(centops);
    assert.match(
      text,
      /^dmr_centops_http_request_duration_seconds_count\{listener="api",method="GET",route="\/v1\/clients\/:id",status="2xx"\} [1-9]/m,
    );
    assert.match(
      text,
      /^dmr_centops_http_request_duration_seconds_count\{listener="enrol",method="POST",route="\/v1\/enroll",status="2xx"\} 1$/m,
    );
    assert.match(text, /route="unmatched",status="4xx"/);
    assert.doesNotMatch(text, /secret-looking-id/);
  });

  it('a flood of distinct unknown URLs, methods and ids adds no series', async () => {
    const series = async () =>
      (await scrape(centops))
        .split('\n')
        .filter((line) => line.startsWith('dmr_centops_http_request_duration_seconds_count'))
        .map((line) => line.replace(/ \S+$/, ''))
        .sort();
    const flood = (i: number) => [
      centops.api(`/v1/flood/${i}/${'x'.repeat(i)}`),
      centops.api(`/v1/clients/no-such-bot-${i}`),
      centops.api(`/v1/clients/police-bot?nonce=${i}`),
      centops.api(`/v1/flood-${i}`, { method: ['PATCH', 'DELETE', 'PROPFIND', `X-FLOOD${i}`][i % 4] }),
    ];
    // One round first, so every series the flood can make exists before counting.
    await Promise.all([0, 1, 2, 3].flatMap(flood));
    const before = await series();
    for (let i = 4; i < 50; i += 1) await Promise.all(flood(i));
    const after = await series();
    assert.deepEqual(after, before, 'the same series, whatever the URLs');
    assert.doesNotMatch(after.join('\n'), /flood|no-such-bot|nonce/);
  });

  it('reads the revision, the policy version and the feed subscribers when scraped', async () => {
    const text = await scrape(centops);
    assert.equal(sample(text, 'dmr_centops_revision'), await centops.store.revision());
    const policy = await centops.server.policies.current();
    assert.equal(sample(text, 'dmr_centops_policy_version'), policy?.version ?? 0);
    assert.equal(sample(text, 'dmr_centops_feed_subscribers'), centops.server.feedWaiters());
    await centops.store.create('Client', client('tax-bot', 'police', 'dmr-tallinn'), ACTOR);
    assert.equal(sample(await scrape(centops), 'dmr_centops_revision'), await centops.store.revision());
  });

  it('serves /healthz and nothing else on the metrics listener', async () => {
    const url = centops.server.metricsUrl as string;
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    assert.equal((await fetch(`${url}/v1/status`)).status, 404);
  });
});
