import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { nodePaths } from '../../src/util/paths.ts';
import { createDaemonContext } from '../../src/daemon/context.ts';
import { buildApp } from '../../src/daemon/app.ts';
import { installTls, loadTls } from '../../src/daemon/tls.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

let dir: string;
let httpsApp: FastifyInstance;
let httpApp: FastifyInstance;

function selfSigned(name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stayup-https-'));
});
after(async () => {
  await httpsApp?.close();
  await httpApp?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('httpscfg refuses a key that is not the certificate\'s and writes nothing', () => {
  const a = selfSigned('a');
  const b = selfSigned('b');
  const web = join(dir, 'var', 'web');
  assert.throws(() => installTls(web, a.cert, b.key, Date.now()), (e) => isStayupError(e) && e.code === 'BAD_ARGUMENT' && e.message === `${b.key}: this key does not belong to the certificate ${a.cert}`);
  assert.throws(() => installTls(web, b.key, b.key, Date.now()), (e) => isStayupError(e) && /not a PEM certificate/.test(e.message));
  assert.equal(existsSync(join(web, 'tls')), false);
});

test('with a certificate the API answers over TLS, and plain HTTP redirects except the health check', async () => {
  const { cert, key } = selfSigned('node1');
  const paths = nodePaths({ STAYUP_VAR: join(dir, 'var') });
  installTls(paths.webDir, cert, key, Date.now());
  const tls = loadTls(paths.webDir)!;
  const ctx = createDaemonContext(paths, { localToken: 't' });
  httpsApp = await buildApp(ctx, { https: tls });
  await httpsApp.listen({ port: 0, host: '127.0.0.1' });
  const port = (httpsApp.server.address() as AddressInfo).port;
  const body = await new Promise<{ status: number; protocol: string; text: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', ca: readFileSync(cert), agent: false }, (res) => {
      const protocol = (res.socket as unknown as { getProtocol(): string }).getProtocol();
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, protocol, text }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(body.status, 200);
  assert.equal(body.protocol, 'TLSv1.3');
  httpApp = await buildApp(ctx, { redirectToHttpsPort: 9453 });
  const r = await httpApp.inject({ method: 'GET', url: '/api/v1/state', remoteAddress: '198.18.1.9', headers: { host: '198.18.1.1:9010' } });
  assert.equal(r.statusCode, 301);
  assert.equal(r.headers.location, 'https://198.18.1.1:9453/api/v1/state');
  const health = await httpApp.inject({ method: 'GET', url: '/var/modules/x/ready.txt', remoteAddress: '198.18.1.9' });
  assert.equal(health.statusCode, 404, 'the health check stays on HTTP');
});
