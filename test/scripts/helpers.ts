import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isProcessAlive } from '../../src/scripts/proc.ts';

export interface ScriptDirs {
  root: string;
  bin: string;
  log: string;
  cleanup(): void;
}

export function scriptDirs(prefix = 'stayup-scripts-'): ScriptDirs {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const bin = join(root, 'bin');
  const log = join(root, 'var');
  mkdirSync(bin);
  mkdirSync(log);
  return { root, bin, log, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Writes an executable /bin/sh script. */
export function writeScript(dir: string, name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

/** Polls until `cond` is true; fails after a generous time. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function readPid(file: string): number {
  const n = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(n) || n <= 1) throw new Error(`bad pid in ${file}`);
  return n;
}

/** Kills a leftover process by PID (test cleanup), ignoring one that is already gone. */
export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

export { isProcessAlive };

export const baseEnv = { PATH: '/usr/local/bin:/usr/bin:/bin' };
