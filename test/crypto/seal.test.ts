import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seal, unseal, parseEnvelope, ReplayGuard, sealClockSkewMs } from '../../src/crypto/seal.ts';
import { generateClusterKey, keyId, decodeKey, encodeKey } from '../../src/crypto/cluster-key.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

const t0 = 1_800_000_000_000;

test('a sealed payload opens with the same key and is unreadable in transit', () => {
  const key = generateClusterKey();
  const e = seal(key, { kid: `cluster:${keyId(key)}`, from: 'node1', ts: t0, dir: 'request' }, { method: 'GET', url: '/api/v1/state', secret: 'hunter2' });
  assert.ok(!JSON.stringify(e).includes('hunter2'));
  assert.deepEqual(unseal(key, parseEnvelope(JSON.parse(JSON.stringify(e)))), { method: 'GET', url: '/api/v1/state', secret: 'hunter2' });
});

test('another key, or any tampered field, fails with CLUSTER_AUTH_FAILED', () => {
  const key = generateClusterKey();
  const e = seal(key, { kid: 'cluster:x', from: 'node1', ts: t0, dir: 'request' }, { a: 1 });
  assert.throws(() => unseal(generateClusterKey(), e), (err) => isStayupError(err) && err.code === 'CLUSTER_AUTH_FAILED');
  for (const tamper of [{ from: 'node2' }, { ts: t0 + 1 }, { dir: 'response' as const }, { ct: Buffer.from('x').toString('base64') }]) {
    assert.throws(() => unseal(key, { ...e, ...tamper }), (err) => isStayupError(err) && err.code === 'CLUSTER_AUTH_FAILED');
  }
});

test('the replay guard refuses a nonce twice and a clock outside the window', () => {
  const key = generateClusterKey();
  const g = new ReplayGuard();
  const e = seal(key, { kid: 'k', from: 'n', ts: t0, dir: 'request' }, {});
  g.check(e, t0 + 10);
  assert.throws(() => g.check(e, t0 + 20), /is a replay/);
  const old = seal(key, { kid: 'k', from: 'n', ts: t0 - sealClockSkewMs - 1000, dir: 'request' }, {});
  assert.throws(() => g.check(old, t0), (err) => isStayupError(err) && err.code === 'CLUSTER_AUTH_REPLAY' && /121 s off this node's clock/.test(err.message));
});

test('malformed envelopes are refused before any crypto', () => {
  for (const bad of [null, 42, {}, { v: 2 }, { v: 1, kid: 'k', from: 'n', ts: 1, nonce: 'zz', dir: 'request', iv: '', ct: '', tag: '' }]) {
    assert.throws(() => parseEnvelope(bad), (err) => isStayupError(err) && err.code === 'BAD_REQUEST' && err.message === 'sealed envelope: missing or malformed fields');
  }
});

test('cluster keys round-trip through their file form and have stable ids', () => {
  const key = generateClusterKey();
  assert.deepEqual(decodeKey(encodeKey(key), 'f'), key);
  assert.equal(keyId(key), keyId(Buffer.from(key)));
  assert.notEqual(keyId(key), keyId(generateClusterKey()));
  assert.throws(() => decodeKey('c2hvcnQ=', 'cluster.key'), /cluster.key: a cluster key is 32 bytes in base64/);
});
