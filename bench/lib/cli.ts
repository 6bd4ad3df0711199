// What the benches' command lines and outputs share: options as `--name value` or `--name=value`, exit 2
// with the usage on a bad one, readable lines on stdout (whose last line is the JSON result), error texts
// without stack frames, and the removal of labs left by runs killed with SIGKILL.
import { Lab } from '../../src/lab/lab.ts';
import { isAlive } from '../../src/lab/sys.ts';

export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * An error's message without the Node stack traces a failing CLI or daemon start prints into it (frames,
 * the caret, `triggerUncaughtException`): what is left says what failed.
 */
export function errText(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text
    .split('\n')
    .map((l) => l.replace(/\s*node:internal\/modules\/run_main:\d+/, ''))
    .filter((l) => l.trim() && !/^\s+at \S|^\s*\^\s*$|^\s*triggerUncaughtException\(|^\s*[{}]\s*$|^\s+(code|url): /.test(l))
    .join('\n');
}

/** One option being read: its name, and its value (the next argument, or what follows `=`). */
export interface OptionArg {
  name: string;
  /** The argument as given (for "unknown option"). */
  given: string;
  value(): string | undefined;
  /** The value as an integer in min..max, or a usage error naming the option. */
  int(min: number, max?: number): number;
  /** The value as a comma-separated list of allowed words, or a usage error. */
  list<T extends string>(allowed: readonly T[]): T[];
}

/**
 * Reads argv's options in order and hands each to `onOption`; `-h`/`--help` prints the usage and exits 0.
 * `fail` is the bench's usage error (it exits 2).
 */
export function readOptions(argv: readonly string[], o: { usage: string; fail: (msg: string) => never }, onOption: (opt: OptionArg) => void): void {
  for (let i = 0; i < argv.length; i++) {
    const given = argv[i]!;
    if (given === '-h' || given === '--help') {
      process.stdout.write(o.usage);
      process.exit(0);
    }
    const eq = given.indexOf('=');
    const name = eq > 0 ? given.slice(0, eq) : given;
    const inline = eq > 0 ? given.slice(eq + 1) : undefined;
    let taken: string | undefined;
    let read = false;
    const value = (): string | undefined => {
      if (!read) {
        read = true;
        taken = inline ?? argv[++i];
      }
      return taken;
    };
    onOption({
      name,
      given,
      value,
      int(min, max = Number.MAX_SAFE_INTEGER) {
        const v = value();
        if (v === undefined || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
          o.fail(max === Number.MAX_SAFE_INTEGER ? `${name} needs an integer >= ${min}` : `${name} needs an integer from ${min} to ${max}`);
        }
        return Number(v);
      },
      list(allowed) {
        const words = (value() ?? '').split(',').map((x) => x.trim()).filter(Boolean);
        if (!words.length || words.some((w) => !(allowed as readonly string[]).includes(w))) o.fail(`${name} takes a list of ${allowed.join(', ')}`);
        return words as typeof allowed[number][];
      },
    });
  }
}

/** The usage error of a bench: the message and the usage on stderr, exit code 2. */
export function usageFailure(bench: string, usage: string): (msg: string) => never {
  return (msg) => {
    process.stderr.write(`${bench}: ${msg}\n${usage}`);
    process.exit(2);
  };
}

/** Labs named `<prefix><pid>` whose run is gone (killed with SIGKILL): removed. */
export async function removeStaleLabs(prefix: string): Promise<void> {
  for (const l of Lab.list()) {
    if (!l.name.startsWith(prefix)) continue;
    const pid = Number(l.name.slice(prefix.length));
    if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) continue;
    say(`removing the lab of an earlier run: ${l.name}`);
    await Lab.down(l.name);
  }
}

/**
 * Ctrl-C, SIGTERM, SIGHUP and an unhandled rejection run `cleanup` (the lab goes) before the bench exits
 * (130 after SIGINT, 143 after the others, 1 after a rejection).
 */
export function cleanUpOnExit(bench: string, cleanup: () => Promise<void>): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${bench}: ${sig}, removing the lab\n`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`${bench}: ${errText(e)}\n`);
    void cleanup().finally(() => process.exit(1));
  });
}
