// The table of bad inputs (issue: at least 25), each fed through the real entry point that meets it in
// production: the config parsers, the daemon API (packages, login, sealed requests) and the CLI. The
// test asserts the exact code and message of each and that nothing changed; docs/bad-inputs.md lists it.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { nodePaths } from '../src/util/paths.ts';
import { createDaemonContext, type DaemonContext } from '../src/daemon/context.ts';
import { buildApp } from '../src/daemon/app.ts';
import { parseClusterConfig } from '../src/config/cluster.ts';
import { parseUserConfig } from '../src/config/userconfig/index.ts';
import { seal } from '../src/crypto/seal.ts';
import { generateClusterKey, keyId, encodeKey } from '../src/crypto/cluster-key.ts';
import { isStayupError } from '../src/errors/stayup-error.ts';
import { rawZip, goodPackage, USERCONFIG } from './packages/helpers.ts';
import { stayupBin } from '../src/lab/stayup-cluster.ts';

export interface Outcome {
  code: string;
  message: string;
}

export interface BadInput {
  name: string;
  run: (env: Env) => Promise<Outcome>;
}

export interface Env {
  app: FastifyInstance;
  ctx: DaemonContext;
  dir: string;
}

export const clusterXml = `<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="198.18.99.1"/>
      <node name="node2" addr="198.18.99.2"/>
    </lan>
  </lans>
</cluster>
`;

const local = { authorization: 'Bearer bad-inputs-token' };

export async function makeEnv(): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-bad-'));
  const ctx = createDaemonContext(nodePaths({ STAYUP_VAR: dir }), { localToken: 'bad-inputs-token' });
  ctx.users.setPassword('admin', 'correct horse', 'Admin');
  ctx.users.setPassword('watcher', 'monitor-pass', 'Monitor');
  ctx.cluster.apply(clusterXml, generateClusterKey(), { now: new Date() });
  const app = await buildApp(ctx);
  const ok = await app.inject({ method: 'POST', url: '/api/v1/modules/base/install', headers: local, payload: { package: goodPackage().toString('base64'), id: 1 } });
  if (ok.statusCode !== 200) throw new Error(`setup install failed: ${ok.body}`);
  return { app, ctx, dir };
}

export async function closeEnv(env: Env): Promise<void> {
  await env.app.close();
  rmSync(env.dir, { recursive: true, force: true });
}

/** Everything a bad input must leave untouched: the node's modules, cluster and users. */
export function nodeSnapshot(env: Env): string {
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name).slice(env.dir.length)]));
  return walk(env.dir).filter((f) => !f.startsWith('/log/') && !f.includes('/.')).sort().join('\n');
}

function thrown(fn: () => unknown): Outcome {
  try {
    fn();
  } catch (e) {
    if (isStayupError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected an error');
}

async function api(env: Env, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = local): Promise<Outcome> {
  const r = await env.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });
  if (r.statusCode < 400) throw new Error(`expected an error, got ${r.statusCode} ${r.body}`);
  const b = r.json() as Outcome;
  return { code: b.code, message: b.message };
}

function install(env: Env, pkg: Buffer, name = 'evil', id?: number): Promise<Outcome> {
  return api(env, 'POST', `/api/v1/modules/${name}/install`, { package: pkg.toString('base64'), ...(id ? { id } : {}) });
}

const uc = (body: string) => `<safe>\n<service mode="mirror">\n${body}\n</service>\n</safe>\n`;
const cluster = parseClusterConfig(clusterXml);
const userconfig = (text: string) => async () => thrown(() => parseUserConfig(text, { file: 'userconfig.xml', cluster, env: {} }));

function cli(args: string[], envVars: Record<string, string> = {}): Outcome {
  try {
    execFileSync(process.execPath, [stayupBin, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...envVars } });
  } catch (e) {
    const x = e as { status: number; stderr: string };
    return { code: `exit ${x.status}`, message: x.stderr.trim() };
  }
  throw new Error('expected the CLI to fail');
}

export const badInputs: BadInput[] = [
  // --- configuration
  { name: 'userconfig: malformed XML (unclosed tag)', run: userconfig('<safe>\n<service mode="mirror">\n<heart>\n</service>\n</safe>\n') },
  { name: 'userconfig: wrong type (maxloop="three")', run: userconfig('<safe>\n<service mode="mirror" maxloop="three">\n<heart><heartbeat name="default"/></heart>\n</service>\n</safe>\n') },
  { name: 'userconfig: bad unit (pulse="700sec")', run: userconfig(uc('<heart pulse="700sec"><heartbeat name="default"/></heart>')) },
  { name: 'userconfig: heartbeat on a lan not in cluster.xml', run: userconfig(uc('<heart>\n  <heartbeat name="lan2"/>\n</heart>')) },
  { name: 'userconfig: unknown element, did-you-mean', run: userconfig(uc('<heart>\n  <heartbeet name="default"/>\n</heart>')) },
  { name: 'userconfig: unknown attribute, did-you-mean', run: userconfig(uc('<heart puls="700ms"><heartbeat name="default"/></heart>')) },
  { name: 'userconfig: <errd> without <user>', run: userconfig(uc('<heart><heartbeat name="default"/></heart>\n<errd><proc name="app" atleast="1" action="restart" class="prim"/></errd>')) },
  { name: 'userconfig: relative replicated dir', run: userconfig(uc('<heart><heartbeat name="default"/></heart>\n<rfs><replicated dir="var/lib/app"/></rfs>')) },
  { name: 'userconfig: failover rule with an unknown action', run: userconfig(uc('<heart><heartbeat name="default"/></heart>\n<failover><![CDATA[\nr1: if (custom.x == down) then explode();\n]]></failover>')) },
  { name: 'cluster.xml: malformed XML', run: async () => thrown(() => parseClusterConfig('<cluster><lans><lan name="a"></lans></cluster>', 'cluster.xml')) },
  { name: 'cluster.xml: duplicate node name', run: async () => thrown(() => parseClusterConfig('<cluster><lans><lan name="a">\n<node name="n1" addr="198.18.0.1"/>\n<node name="n1" addr="198.18.0.2"/>\n</lan></lans></cluster>', 'cluster.xml')) },
  { name: 'cluster.xml: bad port', run: async () => thrown(() => parseClusterConfig('<cluster><lans port="70000"><lan name="a">\n<node name="n1" addr="198.18.0.1"/>\n</lan></lans></cluster>', 'cluster.xml')) },
  { name: 'CLI: confcheck --file of an invalid userconfig exits 2', run: async () => {
    // The file lives outside the node's state: only the node's state must stay unchanged.
    const scratch = mkdtempSync(join(tmpdir(), 'stayup-bad-cli-'));
    try {
      const f = join(scratch, 'bad-userconfig.xml');
      writeFileSync(f, '<safe>\n<service mode="mirror" maxloop="three"/>\n</safe>\n');
      return cli(['confcheck', '--file', f], { STAYUP_VAR: join(scratch, 'var') });
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  } },
  { name: 'CLI: -H names a node that is not in cluster.xml', run: async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'stayup-bad-cli-'));
    try {
      mkdirSync(join(scratch, 'cluster'), { recursive: true });
      writeFileSync(join(scratch, 'cluster', 'cluster.xml'), clusterXml);
      writeFileSync(join(scratch, 'cluster', 'cluster.key'), encodeKey(generateClusterKey()), { mode: 0o600 });
      return cli(['-H', 'node9', 'state'], { STAYUP_VAR: scratch });
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  } },
  { name: 'CLI: -H "*" on a node without cluster configuration', run: async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'stayup-bad-cli-'));
    try {
      return cli(['-H', '*', 'state'], { STAYUP_VAR: scratch, STAYUP_PASSWORD: 'x' });
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  } },
  { name: 'CLI: module install -M with a non-number', run: async () => cli(['module', 'install', '-m', 'x', '-M', 'two', '/nonexistent.safe'], { STAYUP_VAR: '/nonexistent' }) },
  // --- module packages
  { name: 'package: "../" entry (zip slip)', run: (env) => install(env, goodPackage([{ name: '../evil.sh', data: 'x' }])) },
  { name: 'package: absolute entry name', run: (env) => install(env, goodPackage([{ name: '/etc/cron.d/evil', data: 'x' }])) },
  { name: 'package: symlink entry', run: (env) => install(env, goodPackage([{ name: 'bin/link', data: '/etc/shadow', mode: 0o120777 }])) },
  { name: 'package: device file entry', run: (env) => install(env, goodPackage([{ name: 'bin/dev', mode: 0o020644 }])) },
  { name: 'package: entry over the size cap', run: (env) => install(env, goodPackage([{ name: 'bin/big', data: Buffer.alloc(65 * 1024 * 1024) }])) },
  { name: 'package: zip bomb (compression ratio)', run: (env) => install(env, goodPackage([{ name: 'bin/bomb', data: Buffer.alloc(20 * 1024 * 1024) }])) },
  { name: 'package: missing conf/userconfig.xml', run: (env) => install(env, rawZip([{ name: 'bin/start_prim', data: '#!/bin/sh\n', mode: 0o100755 }])) },
  { name: 'package: invalid conf/userconfig.xml', run: (env) => install(env, goodPackage([], USERCONFIG.replace('<user/>', '<usr/>'))) },
  { name: 'package: not a zip', run: (env) => install(env, Buffer.from('this is not a zip file, just text')) },
  { name: 'package: duplicate module id (-M 1 taken)', run: (env) => install(env, goodPackage(), 'second', 1) },
  { name: 'package: invalid module name', run: (env) => api(env, 'POST', '/api/v1/modules/bad%20name/install', { package: goodPackage().toString('base64') }) },
  // --- authentication, sealed requests
  { name: 'login: wrong password', run: (env) => api(env, 'POST', '/login', { user: 'admin', password: 'wrong horse' }, {}) },
  { name: 'API: no credentials', run: (env) => api(env, 'GET', '/api/v1/state', undefined, {}) },
  { name: 'API: unknown API token', run: (env) => api(env, 'GET', '/api/v1/state', undefined, { authorization: 'Bearer su_forged' }) },
  { name: 'API: Monitor role tries an Admin action', run: async (env) => {
    const login = await env.app.inject({ method: 'POST', url: '/login', payload: { user: 'watcher', password: 'monitor-pass' } });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    return api(env, 'DELETE', '/api/v1/modules/base', undefined, { cookie });
  } },
  { name: 'relay: request sealed with a forged cluster key', run: async (env) => {
    const forged = generateClusterKey();
    return api(env, 'POST', '/api/v1/cluster/relay', seal(forged, { kid: `cluster:${keyId(forged)}`, from: 'mallory', ts: Date.now(), dir: 'request' }, { method: 'DELETE', url: '/api/v1/modules/base' }), {});
  } },
  { name: 'relay: forged key presented under the real key id', run: async (env) => {
    const forged = generateClusterKey();
    return api(env, 'POST', '/api/v1/cluster/relay', seal(forged, { kid: `cluster:${keyId(env.ctx.cluster.key()!)}`, from: 'mallory', ts: Date.now(), dir: 'request' }, { method: 'DELETE', url: '/api/v1/modules/base' }), {});
  } },
  { name: 'relay: replayed sealed request', run: async (env) => {
    const key = env.ctx.cluster.key()!;
    const e = seal(key, { kid: `cluster:${keyId(key)}`, from: 'node2', ts: Date.now(), dir: 'request' }, { method: 'GET', url: '/api/v1/state' });
    await env.app.inject({ method: 'POST', url: '/api/v1/cluster/relay', payload: e });
    return api(env, 'POST', '/api/v1/cluster/relay', e, {});
  } },
  { name: 'relay: sealed request from a clock 10 minutes off', run: async (env) => {
    const key = env.ctx.cluster.key()!;
    return api(env, 'POST', '/api/v1/cluster/relay', seal(key, { kid: `cluster:${keyId(key)}`, from: 'node2', ts: Date.now() - 600_000, dir: 'request' }, { method: 'GET', url: '/api/v1/state' }), {});
  } },
  { name: 'relay: malformed envelope', run: (env) => api(env, 'POST', '/api/v1/cluster/relay', { v: 1, kid: 'cluster:x' }, {}) },
  { name: 'cluster config: a key that is not 32 bytes', run: (env) => api(env, 'PUT', '/api/v1/cluster/config', { xml: clusterXml, key: encodeKey(Buffer.alloc(16)).trim() }) },
  { name: 'cluster config: invalid cluster.xml pushed', run: (env) => api(env, 'PUT', '/api/v1/cluster/config', { xml: '<cluster><lans/></cluster>', key: encodeKey(generateClusterKey()).trim() }) },
  // --- module control (mirror engine)
  { name: 'module command: unknown command', run: (env) => api(env, 'POST', '/api/v1/modules/base/command', { command: 'explode' }) },
  { name: 'module command: nosync on something else than swap', run: (env) => api(env, 'POST', '/api/v1/modules/base/command', { command: 'stop', nosync: true }) },
  { name: 'module command: fullsync on something else than second', run: (env) => api(env, 'POST', '/api/v1/modules/base/command', { command: 'start', fullsync: true }) },
  { name: 'module command: identity with a shell metacharacter', run: (env) => api(env, 'POST', '/api/v1/modules/base/command', { command: 'restart', identity: 'x;rm' }) },
  { name: 'module command: start on a node that is not in cluster.xml', run: (env) => api(env, 'POST', '/api/v1/modules/base/command', { command: 'start' }) },
  { name: 'module wait: unknown state', run: (env) => api(env, 'GET', '/api/v1/modules/base/wait?states=PRIM,MASTER&timeoutMs=10') },
  { name: 'module genkey: a key that is not 32 bytes', run: (env) => api(env, 'POST', '/api/v1/modules/base/genkey', { moduleKey: encodeKey(Buffer.alloc(8)).trim() }) },
  { name: 'module install: a module key that is not base64', run: (env) => api(env, 'POST', '/api/v1/modules/evil/install', { package: goodPackage().toString('base64'), moduleKey: '%%%not-base64%%%' }) },
  { name: 'CLI: swap with an unknown argument', run: async () => cli(['swap', 'now', '-m', 'base'], { STAYUP_VAR: mkdtempSync(join(tmpdir(), 'stayup-bad-cli-')) }) },
  { name: 'CLI: second with an unknown argument', run: async () => cli(['second', 'full', '-m', 'base'], { STAYUP_VAR: mkdtempSync(join(tmpdir(), 'stayup-bad-cli-')) }) },
  { name: 'CLI: waitstate with a timeout that is not a number', run: async () => cli(['waitstate', 'PRIM', '-m', 'base', '-t', 'soon'], { STAYUP_VAR: mkdtempSync(join(tmpdir(), 'stayup-bad-cli-')), STAYUP_PORT: '1' }) },
];
