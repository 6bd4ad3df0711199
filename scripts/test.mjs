// Test runner: node 20's `--test` neither globs nor finds .ts files, so we walk test/ ourselves,
// run every *.test.ts with tsx, stream TAP, and end with the plain "N passed, N failed" line CI reads.
// Lab (end-to-end) tests need root, namespaces and the Debian packages of scripts/setup.sh; they are
// files under test/lab/ and run after the unit tests, one at a time. `--skip-lab` leaves them out.
import { run } from 'node:test';
import { tap } from 'node:test/reporters';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const args = process.argv.slice(2);
const skipLab = args.includes('--skip-lab');
const only = args.filter((a) => !a.startsWith('--'));
const walk = (d) =>
  readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(d, e.name)) : /\.test\.ts$/.test(e.name) ? [join(d, e.name)] : [],
  );
let files = walk('test').sort();
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
const unit = files.filter((f) => !f.startsWith(join('test', 'lab')));
const lab = skipLab ? [] : files.filter((f) => f.startsWith(join('test', 'lab')));

let passed = 0;
let failed = 0;
let skipped = 0;
async function runFiles(list, concurrency) {
  if (list.length === 0) return;
  const stream = run({ files: list, concurrency, timeout: 30 * 60 * 1000 });
  stream.on('test:pass', (e) => {
    if (e.details?.type === 'suite') return;
    if (e.skip || e.todo) skipped++;
    else passed++;
  });
  stream.on('test:fail', (e) => {
    if (e.details?.type !== 'suite') failed++;
  });
  await pipeline(stream.compose(tap), process.stdout, { end: false });
}
await runFiles(unit, 2);
await runFiles(lab, 1);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
