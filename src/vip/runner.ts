// How the virtual IP manager runs system commands: an injected function, so unit tests can record the
// command lines without root, and the lab can run them inside a server's namespaces. The real runner is
// execFile with no shell.
import { execFile } from 'node:child_process';

export interface CommandOptions {
  /** Aborting kills the command (SIGTERM); the promise then rejects with an AbortError. */
  signal?: AbortSignal;
  /** Kill the command after this many ms; it then resolves with code 124 (0 or absent = no limit). */
  timeoutMs?: number;
}

export interface CommandResult {
  /** Exit code; 124 on timeout, 128 + n when killed by signal n. */
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs argv[0] with argv[1..] and resolves with its exit code and output. It resolves for any exit code;
 * it rejects only when the command cannot be started (e.g. ENOENT) or was aborted through `signal`.
 */
export type CommandRunner = (argv: readonly string[], opts?: CommandOptions) => Promise<CommandResult>;

const SBIN_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** PATH with the sbin directories, where `ip`, `ss` and `arping` live on Debian. */
export function commandPath(path: string | undefined = process.env.PATH): string {
  const parts = (path ?? '').split(':').filter(Boolean);
  for (const d of SBIN_PATH) if (!parts.includes(d)) parts.push(d);
  return parts.join(':');
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGPIPE: 13, SIGTERM: 15 };

/** Runs one command with execFile (no shell). See CommandRunner for the contract. */
export function runCommand(argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new TypeError('runCommand: empty argv'));
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        encoding: 'utf8',
        env: { ...process.env, PATH: commandPath(), LC_ALL: 'C' },
        maxBuffer: 16 * 1024 * 1024,
        timeout: opts.timeoutMs && opts.timeoutMs > 0 ? opts.timeoutMs : 0,
        killSignal: 'SIGKILL',
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: NodeJS.Signals | null };
        if (e.name === 'AbortError') return reject(e);
        if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
        if (typeof e.code === 'string') return reject(e); // spawn error: ENOENT, EACCES, …
        if (e.killed && opts.timeoutMs) return resolve({ code: 124, stdout, stderr });
        return resolve({ code: 128 + (e.signal ? SIGNAL_NUMBERS[e.signal] ?? 0 : 0), stdout, stderr });
      },
    );
  });
}

/** The default runner: commands run in this process's namespaces. */
export const execRunner: CommandRunner = runCommand;
