import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import {
  BearerTokens,
  bearerToken,
  isLoopbackHost,
  isLoopbackHostHeader,
  parseTokenFile,
  parseTokenList,
} from './auth.js';

const TOKEN_A = 'tA2nP4xQ9sV7wZ1yB3cD5eF6gH8jK0mN';
const TOKEN_B = 'q8W-e7R_t6Y.u5I~o4P+a3S/d2F1gH0jKl==';

describe('bridge authentication pieces', () => {
  it('matches tokens by digest, and never shows them', () => {
    const tokens = new BearerTokens([TOKEN_A, TOKEN_B, TOKEN_A], ['/etc/dmr/tokens']);
    assert.equal(tokens.count, 2);
    assert.ok(tokens.matches(TOKEN_A));
    assert.ok(tokens.matches(TOKEN_B));
    assert.ok(!tokens.matches(TOKEN_A.slice(0, -1)));
    assert.ok(!tokens.matches(`${TOKEN_A}x`));
    assert.ok(!tokens.matches(''));
    for (const shown of [JSON.stringify({ tokens }), inspect(tokens), String(inspect({ nested: { tokens } }))]) {
      assert.ok(!shown.includes(TOKEN_A) && !shown.includes(TOKEN_B), shown);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(tokens)), { count: 2, sources: ['/etc/dmr/tokens'] });
  });

  it('reads a tokens file and a variable; problems name the line, never the token', () => {
    const file = parseTokenFile(`# callers of ria-bot\n\n${TOKEN_A}\n  ${TOKEN_B}  \nshort-secret\n`, 'tokens.txt');
    assert.deepEqual(file.tokens, [TOKEN_A, TOKEN_B]);
    assert.deepEqual(file.problems, ['tokens.txt line 5: the token is shorter than 32 characters']);
    const list = parseTokenList(`${TOKEN_A}, ${TOKEN_B} ${'x'.repeat(40)}!`, 'DMR_BRIDGE_AUTH_TOKENS');
    assert.deepEqual(list.tokens, [TOKEN_A, TOKEN_B]);
    assert.equal(list.problems.length, 1);
    assert.match(list.problems[0] ?? '', /^DMR_BRIDGE_AUTH_TOKENS: token 3 has characters outside/);
    assert.ok(!list.problems[0]?.includes('xxxx'));
  });

  it('reads a bearer token from Authorization', () => {
    assert.equal(bearerToken(`Bearer ${TOKEN_A}`), TOKEN_A);
    assert.equal(bearerToken(`bearer  ${TOKEN_A} `), TOKEN_A);
    assert.equal(bearerToken(`Basic ${TOKEN_A}`), undefined);
    assert.equal(bearerToken(`Bearer ${TOKEN_A} extra`), undefined);
    assert.equal(bearerToken(undefined), undefined);
    // Linear on hostile input (no backtracking blow-up).
    assert.equal(bearerToken(`Bearer ${'a'.repeat(16_000)} b`), undefined);
  });

  it('tells loopback listen hosts and loopback Host headers', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) {
      assert.ok(isLoopbackHost(host), host);
    }
    // 127.0.0.0/8 by its literal: a name that merely starts with "127." is not an address at all.
    for (const host of [
      '0.0.0.0',
      '::',
      '10.0.0.5',
      'bridge.example',
      'localhost.evil.example',
      '127.0.0.1.evil.example',
      '127.attacker.example',
      '126.255.255.255',
      '128.0.0.1',
      '::ffff:128.0.0.1',
    ]) {
      assert.ok(!isLoopbackHost(host), host);
    }
    for (const header of ['127.0.0.1:8480', 'localhost:8480', 'localhost', '[::1]:8480', '127.0.0.1']) {
      assert.ok(isLoopbackHostHeader(header), header);
    }
    for (const header of [
      undefined,
      '',
      'evil.example:8480',
      'rebind.attacker.example',
      '[::1',
      '127.0.0.1:x',
      '127.0.0.1.nip.io:8480',
    ]) {
      assert.ok(!isLoopbackHostHeader(header), String(header));
    }
  });
});
