// Golden traces of the mirror machine: each test/mirror/testdata/*.txt file drives one node through a
// scenario and holds the exact effects expected (see trace.ts for the verbs). REWRITE=1 regenerates them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrace, formatTrace, TraceRunner } from './trace.ts';

const dir = join(import.meta.dirname, 'testdata');
const rewrite = process.env.REWRITE === '1';

for (const file of readdirSync(dir).filter((f) => f.endsWith('.txt')).sort()) {
  test(`trace ${file}`, () => {
    const path = join(dir, file);
    const { header, blocks } = parseTrace(readFileSync(path, 'utf8'));
    const runner = new TraceRunner();
    const outputs: Array<{ command: string; output: string }> = [];
    for (const b of blocks) {
      const output = runner.run(b.command);
      outputs.push({ command: b.command, output });
      if (!rewrite) assert.equal(output, b.expected, `${file}:${b.line}: ${b.command}`);
    }
    if (rewrite) writeFileSync(path, formatTrace(header, outputs));
  });
}
