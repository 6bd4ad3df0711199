import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import { PROTOCOL_VERSION, type Frame } from '../../src/replication/protocol.ts';
import { inlineTarget, testSource, until } from './scripted-peer.ts';

// A first sync (the secondary has nothing): files its directory listings lack are sent whole, with no
// checksum request first. One round trip per file less: with a million small files the first sync was
// bound by those round trips (bench:scale).

const native = nativeAvailable();
const skip = native === true ? false : native;

describe('first sync to an empty secondary', { skip }, () => {
  const base = join(tmpdir(), `stayup-first-sync-${process.pid}`);
  after(() => rmSync(base, { recursive: true, force: true }));

  it('sends the files its listings lack whole, without asking their checksums; the copy is identical', async () => {
    const A = join(base, 'a');
    const B = join(base, 'b');
    mkdirSync(join(A, 'sub', 'deeper'), { recursive: true });
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 30; i++) {
      const rel = i % 3 === 0 ? `f${i}` : i % 3 === 1 ? `sub/f${i}` : `sub/deeper/f${i}`;
      files[rel] = Buffer.alloc(1 + i * 1000, i);
      writeFileSync(join(A, rel), files[rel]!);
    }
    const { source } = testSource(A);
    const { target } = inlineTarget(B);
    const [s, t] = memoryLinkPair();
    target.attach(t, {});
    const sent: Frame['type'][] = [];
    t.onFrame((f) => sent.push(f.type));
    let welcomed = false;
    s.onFrame((f) => {
      if (f.type === 'welcome') welcomed = true;
    });
    s.send({ type: 'hello', version: PROTOCOL_VERSION, module: 'm', node: 'n1', session: '1' });
    await until(() => welcomed, 'the welcome');
    source.attach(s, { sync: 'incremental', syncId: null, clean: true, lastSyncMs: null, hints: [], hintsOverflow: false });
    await until(() => sent.includes('syncEnd'), 'the end of the first sync', 20_000);
    await until(() => Object.keys(files).every((rel) => existsSync(join(B, rel))), 'the files applied');
    assert.equal(sent.filter((x) => x === 'rangeSumReq' || x === 'sumReq').length, 0, 'no checksum was asked for');
    assert.equal(sent.filter((x) => x === 'fileMeta').length, 2 * 30, 'each file created, then its attributes');
    for (const [rel, data] of Object.entries(files)) assert.deepEqual(readFileSync(join(B, rel)), data, rel);
  });
});
