import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodePaths } from '../../src/util/paths.ts';
import {
  decodeModuleKey,
  encodeModuleKey,
  generateModuleKey,
  moduleKeyId,
  moduleKeyPath,
  readModuleKey,
  writeModuleKey,
} from '../../src/heartbeat/module-key.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

function tempNode() {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-hbkey-'));
  const paths = nodePaths({ STAYUP_VAR: dir });
  return { dir, paths, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('a module key is written to conf/modulekey.dat, 0600, and read back', (t) => {
  const { paths, done } = tempNode();
  t.after(done);
  mkdirSync(join(paths.modulesDir, 'mirror1', 'conf'), { recursive: true });
  assert.equal(readModuleKey(paths, 'mirror1'), undefined, 'no key yet');
  const key = generateModuleKey();
  const file = writeModuleKey(paths, 'mirror1', key);
  assert.equal(file, join(paths.modulesDir, 'mirror1', 'conf', 'modulekey.dat'));
  assert.equal(moduleKeyPath(paths, 'mirror1'), file);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(readFileSync(file, 'utf8'), key.toString('base64') + '\n');
  assert.ok(readModuleKey(paths, 'mirror1')!.equals(key));
  // Rewriting (genkey again) replaces it.
  const key2 = generateModuleKey();
  writeModuleKey(paths, 'mirror1', key2);
  assert.ok(readModuleKey(paths, 'mirror1')!.equals(key2));
  assert.match(moduleKeyId(key2), /^[0-9a-f]{16}$/);
  assert.notEqual(moduleKeyId(key), moduleKeyId(key2));
});

test('refused: a module that is not installed, a bad name, a readable or malformed key file', (t) => {
  const { paths, done } = tempNode();
  t.after(done);
  assert.throws(() => writeModuleKey(paths, 'absent', generateModuleKey()), (e) => isStayupError(e) && e.code === 'MODULE_NOT_FOUND');
  assert.throws(() => writeModuleKey(paths, '../etc', generateModuleKey()), (e) => isStayupError(e) && e.code === 'MODULE_NAME_INVALID');
  mkdirSync(join(paths.modulesDir, 'm', 'conf'), { recursive: true });
  const file = writeModuleKey(paths, 'm', generateModuleKey());
  chmodSync(file, 0o644);
  assert.throws(
    () => readModuleKey(paths, 'm'),
    (e) => isStayupError(e) && e.code === 'MODULE_KEY_INVALID' && e.message === `${file} is readable by group or others (mode 0644): chmod 600 it, or generate a new module key`,
  );
  writeFileSync(file, 'not base64 at all\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  assert.throws(() => readModuleKey(paths, 'm'), (e) => isStayupError(e) && e.code === 'MODULE_KEY_INVALID' && e.message === `${file}: a module key is 32 bytes in base64`);
  assert.throws(() => decodeModuleKey(Buffer.alloc(16).toString('base64'), 'x'), (e) => isStayupError(e) && e.code === 'MODULE_KEY_INVALID');
  assert.throws(() => encodeModuleKey(Buffer.alloc(31)), (e) => isStayupError(e) && e.code === 'MODULE_KEY_INVALID');
  assert.ok(decodeModuleKey(encodeModuleKey(Buffer.alloc(32, 7)), 'x').equals(Buffer.alloc(32, 7)));
});
