import { writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { installDir } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import type { Lab, ExecResult } from './lab.ts';

/**
 * Runs stayup for real inside a lab: a daemon per server, the CLI inside a server, cluster.xml for the
 * lab's addresses. Used by the demo and by the end-to-end tests, so both show the same thing.
 */
export const stayupBin = join(installDir, 'bin', 'stayup');
export const stayupdBin = join(installDir, 'bin', 'stayupd');

export function serverNames(lab: Lab): string[] {
  return lab.servers;
}

/** cluster.xml with one lan holding every server of the lab. */
export function labClusterXml(lab: Lab, lanName = 'default'): string {
  const nodes = serverNames(lab).map((n) => `      <node name="${n}" addr="${lab.addr(n)}"/>`);
  return `<cluster>\n  <lans>\n    <lan name="${lanName}">\n${nodes.join('\n')}\n    </lan>\n  </lans>\n</cluster>\n`;
}

/** Runs `stayup ARGS` inside a server (as root there, like an operator logged in on it). */
export function stayupOn(lab: Lab, node: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ExecResult> {
  return lab.exec(node, [process.execPath, stayupBin, ...args], { env: opts.env, timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** Writes a file into a server's private view of a path (e.g. /srv/cluster.xml). */
export function writeOnServer(lab: Lab, node: string, serverPath: string, content: string | Uint8Array, mode = 0o644): void {
  const host = lab.hostPath(node, serverPath);
  mkdirSync(dirname(host), { recursive: true });
  writeFileSync(host, content, { mode });
  chmodSync(host, mode);
}

/** Starts stayupd on every server with the same initial admin password, and waits until each answers. */
export async function startDaemons(lab: Lab, opts: { password: string; timeoutMs?: number }): Promise<void> {
  for (const n of serverNames(lab)) {
    writeOnServer(lab, n, '/var/lib/stayup/private/admin.pw', opts.password + '\n', 0o600);
    await lab.spawn(n, [process.execPath, stayupdBin, '--admin-password-file', '/var/lib/stayup/private/admin.pw'], {
      logFile: join(lab.stateDir, 'logs', `${n}-stayupd.log`),
    });
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (const n of serverNames(lab)) {
    for (;;) {
      const r = await stayupOn(lab, n, ['level'], { timeoutMs: 20_000 });
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new StayupError('LAB_COMMAND_FAILED', `stayupd on ${n} did not answer: ${r.stderr.trim()}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  }
}
