import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { nodePaths } from '../../src/util/paths.ts';
import { createDaemonContext, type DaemonContext } from '../../src/daemon/context.ts';
import { buildApp } from '../../src/daemon/app.ts';
import { seal, unseal, parseEnvelope } from '../../src/crypto/seal.ts';
import { generateClusterKey, keyId, encodeKey } from '../../src/crypto/cluster-key.ts';
import { derivePasswordVerifier } from '../../src/daemon/auth/user-store.ts';
import { clusterXml } from '../bad-inputs.cases.ts';


let dir: string;
let ctx: DaemonContext;
let app: FastifyInstance;
const local = { authorization: 'Bearer local-test-token' };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stayup-api-'));
  ctx = createDaemonContext(nodePaths({ STAYUP_VAR: dir }), { localToken: 'local-test-token' });
  ctx.users.setPassword('admin', 'correct horse', 'Admin');
  ctx.users.setPassword('watcher', 'monitor-pass', 'Monitor');
  app = await buildApp(ctx);
});
after(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the health check needs no login and answers 404 for a module that is not ready', async () => {
  const r = await app.inject({ method: 'GET', url: '/var/modules/demo/ready.txt' });
  assert.equal(r.statusCode, 404);
  assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
});

test('API calls need a login: AUTH_REQUIRED, then AUTH_FAILED for a wrong password', async () => {
  const r = await app.inject({ method: 'GET', url: '/api/v1/state' });
  assert.equal(r.statusCode, 401);
  assert.deepEqual(r.json(), { code: 'AUTH_REQUIRED', message: 'login required: use a session (POST /login) or an API token' });
  const bad = await app.inject({ method: 'POST', url: '/login', payload: { user: 'admin', password: 'wrong password' } });
  assert.equal(bad.statusCode, 401);
  assert.deepEqual(bad.json(), { code: 'AUTH_FAILED', message: 'wrong user name or password' });
});

test('a session cookie from /login (form fields of the reference) opens the API; roles are enforced', async () => {
  const r = await app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'httpd_username=watcher&httpd_password=monitor-pass&login=1' });
  assert.equal(r.statusCode, 200);
  const cookie = String(r.headers['set-cookie']).split(';')[0]!;
  assert.match(cookie, /^stayupSession=/);
  assert.equal((await app.inject({ method: 'GET', url: '/api/v1/state', headers: { cookie } })).statusCode, 200);
  const forbidden = await app.inject({ method: 'PUT', url: '/api/v1/users/eve', headers: { cookie }, payload: { password: 'whatever123' } });
  assert.equal(forbidden.statusCode, 403);
  assert.deepEqual(forbidden.json(), { code: 'AUTH_FORBIDDEN', message: 'user "watcher" has role Monitor; this needs Admin' });
});

test('API tokens carry their role; an unknown token is refused', async () => {
  const created = await app.inject({ method: 'POST', url: '/api/v1/apikey/Control/ci', headers: local });
  const token = created.json().token as string;
  assert.match(token, /^su_/);
  assert.equal((await app.inject({ method: 'GET', url: '/api/v1/modules', headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
  const r = await app.inject({ method: 'GET', url: '/api/v1/modules', headers: { authorization: 'Bearer su_forged' } });
  assert.equal(r.statusCode, 401);
  assert.equal(r.json().code, 'AUTH_TOKEN_INVALID');
});

test('the local root token only works from loopback', async () => {
  const r = await app.inject({ method: 'GET', url: '/api/v1/state', headers: local, remoteAddress: '198.18.99.7' });
  assert.equal(r.statusCode, 401);
  assert.equal(r.json().code, 'AUTH_TOKEN_INVALID');
});

async function relay(secret: Buffer, kid: string, inner: object, ts = Date.now()) {
  const env = seal(secret, { kid, from: 'test', ts, dir: 'request' }, inner);
  const r = await app.inject({ method: 'POST', url: '/api/v1/cluster/relay', payload: env });
  return { r, env };
}

test('bootstrap: a request sealed with the admin password configures the cluster; a wrong password is refused', async () => {
  const params = ctx.users.passwordParams('admin');
  const key = generateClusterKey();
  const good = derivePasswordVerifier('correct horse', params);
  const { r, env } = await relay(good, 'user:admin', { method: 'PUT', url: '/api/v1/cluster/config', body: { xml: clusterXml, key: encodeKey(key).trim() } });
  assert.equal(r.statusCode, 200);
  const answer = unseal(good, parseEnvelope(r.json())) as { status: number; body: { keyId: string } };
  assert.equal(answer.status, 200);
  assert.equal(answer.body.keyId, keyId(key));
  assert.equal(parseEnvelope(r.json()).nonce, env.nonce);
  const bad = derivePasswordVerifier('wrong horse', params);
  const { r: r2 } = await relay(bad, 'user:admin', { method: 'GET', url: '/api/v1/state' });
  assert.equal(r2.statusCode, 401);
  assert.deepEqual(r2.json(), { code: 'AUTH_FAILED', message: 'sealed request for user "admin": wrong user name or password' });
});

test('a request sealed with a forged cluster key is refused; the real key works; replays are refused', async () => {
  const key = ctx.cluster.key()!;
  const forged = generateClusterKey();
  const { r } = await relay(forged, `cluster:${keyId(forged)}`, { method: 'GET', url: '/api/v1/state' });
  assert.equal(r.statusCode, 401);
  assert.deepEqual(r.json(), { code: 'CLUSTER_AUTH_FAILED', message: `request from "test" is sealed with cluster key ${keyId(forged)}, this node has ${keyId(key)}: push the cluster configuration again` });
  // A forger who copies the real key id still cannot authenticate.
  const { r: r3 } = await relay(forged, `cluster:${keyId(key)}`, { method: 'GET', url: '/api/v1/state' });
  assert.equal(r3.statusCode, 401);
  assert.equal(r3.json().code, 'CLUSTER_AUTH_FAILED');
  const { r: ok, env } = await relay(key, `cluster:${keyId(key)}`, { method: 'GET', url: '/api/v1/cluster/confinfo' });
  assert.equal(ok.statusCode, 200);
  const again = await app.inject({ method: 'POST', url: '/api/v1/cluster/relay', payload: env });
  assert.equal(again.statusCode, 401);
  assert.deepEqual(again.json(), { code: 'CLUSTER_AUTH_REPLAY', message: 'sealed request from "test" is a replay' });
});

test('the relay only forwards API calls', async () => {
  const key = ctx.cluster.key()!;
  const { r } = await relay(key, `cluster:${keyId(key)}`, { method: 'GET', url: '/var/modules/x/ready.txt' });
  assert.equal(r.statusCode, 400);
  assert.equal(r.json().message, 'sealed request: only /api/v1/ calls can be relayed');
});

test('every state-changing call lands in the audit log with who made it', async () => {
  const r = await app.inject({ method: 'GET', url: '/api/v1/cmdlog?count=50', headers: local });
  const recs = r.json().records as { user: string; command: string; ok: boolean }[];
  assert.ok(recs.some((x) => x.user === 'admin' && x.command === 'cluster config' && x.ok));
  assert.ok(recs.some((x) => x.user === 'watcher' && x.ok === false));
});

test('the OpenAPI document lists the routes with their roles', async () => {
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
  assert.equal(doc.openapi, '3.1.0');
  assert.match(doc.paths['/api/v1/modules/{module}/install'].post.description, /Admin/);
  assert.ok(doc.paths['/var/modules/{module}/ready.txt'].get);
});
