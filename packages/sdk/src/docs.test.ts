/**
 * docs/amqp-clients.md shows code that plain-amqp.integration.test.ts runs:
 * every `// doc: <name>` … `// doc: end` block of the test must appear
 * verbatim (dedented) in a code block of the document.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = join(here, '..');

function dedent(lines: string[]): string {
  const indent = Math.min(
    ...lines.filter((line) => line.trim() !== '').map((line) => /^ */.exec(line)?.[0].length ?? 0),
  );
  return lines.map((line) => line.slice(indent)).join('\n');
}

describe('docs/amqp-clients.md', () => {
  it('shows exactly the code its test runs', async () => {
    const source = await readFile(join(packageDir, 'src', 'plain-amqp.integration.test.ts'), 'utf8');
    const doc = await readFile(join(packageDir, '..', '..', 'docs', 'amqp-clients.md'), 'utf8');
    const blocks = [...source.matchAll(/\/\/ doc: (\w+)\n([\s\S]*?)\n\s*\/\/ doc: end/g)];
    assert.deepEqual(
      blocks.map((block) => block[1]),
      ['connect', 'send', 'receive'],
    );
    for (const block of blocks) {
      const code = dedent((block[2] ?? '').split('\n'));
      assert.ok(doc.includes(code), `the "${block[1] ?? ''}" block differs from the document:\n${code}`);
    }
  });
});
