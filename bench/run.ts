// npm run bench -- [--only failover|replication|scale] [--scale] [--quick]
//
// Every bench in sequence (bench/failover.ts, then bench/replication.ts), each in its own Node process with
// its default options (--quick: the smoke-run options of each). bench/scale.ts (a million files: 20 to 45
// minutes and 10 GB of disk) runs only when asked: `--scale` (after the others) or `--only scale`. Their
// lines are passed through as they come; the last line of stdout is one JSON object holding each bench's own
// last-line JSON (null when a bench printed none) and exit code. Exit code: the worst of the benches' (2 on
// bad usage).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Bench {
  name: 'failover' | 'replication' | 'scale';
  script: string;
  /** Options for a smoke run. */
  quick: string[];
  /** Runs only when asked for (--scale or --only): it takes far longer than the others. */
  optIn?: boolean;
}

const BENCHES: Bench[] = [
  { name: 'failover', script: 'failover.ts', quick: ['--settings', 'fast', '--freezes', '3', '--idle-seconds', '10', '--service-freezes', '1'] },
  { name: 'replication', script: 'replication.ts', quick: ['--quick'] },
  { name: 'scale', script: 'scale.ts', quick: ['--quick'], optIn: true },
];

const USAGE = `usage: npm run bench -- [--only failover|replication|scale] [--scale] [--quick]\n`;

function parseArgs(argv: string[]): { only?: Bench['name']; quick: boolean; scale: boolean } {
  const a: { only?: Bench['name']; quick: boolean; scale: boolean } = { quick: false, scale: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    if (k === '--quick') a.quick = true;
    else if (k === '--scale') a.scale = true;
    else if (k === '--only' || k.startsWith('--only=')) {
      const v = k.includes('=') ? k.slice(7) : argv[++i];
      if (v !== 'failover' && v !== 'replication' && v !== 'scale') {
        process.stderr.write(`bench: --only is failover, replication or scale\n${USAGE}`);
        process.exit(2);
      }
      a.only = v;
    } else if (k === '-h' || k === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else {
      process.stderr.write(`bench: unknown option ${k}\n${USAGE}`);
      process.exit(2);
    }
  }
  return a;
}

/** Runs one bench, echoing its stdout and stderr; resolves with its exit code and last stdout line. */
function runBench(b: Bench, quick: boolean): Promise<{ code: number; last: string }> {
  const script = fileURLToPath(new URL(`./${b.script}`, import.meta.url));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...(quick ? b.quick : [])], { stdio: ['inherit', 'pipe', 'inherit'] });
    let pending = '';
    let last = '';
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const l of lines) if (l.trim()) last = l;
    });
    // Ctrl-C reaches the child too (same process group): it cleans its lab up and exits.
    child.on('close', (code, signal) => {
      if (pending.trim()) last = pending;
      resolve({ code: code ?? (signal ? 1 : 0), last });
    });
  });
}

const args = parseArgs(process.argv.slice(2));
const results: Record<string, { exit_code: number; result: unknown }> = {};
let worst = 0;
for (const b of BENCHES.filter((x) => (args.only ? x.name === args.only : !x.optIn || args.scale))) {
  process.stdout.write(`\n######## bench:${b.name}${args.quick ? ' (quick)' : ''}\n`);
  const r = await runBench(b, args.quick);
  let json: unknown = null;
  try {
    json = r.last.startsWith('{') ? JSON.parse(r.last) : null;
  } catch {
    json = null;
  }
  results[b.name] = { exit_code: r.code, result: json };
  worst = Math.max(worst, r.code);
}
process.stdout.write(`${JSON.stringify({ bench: 'all', ...results })}\n`);
process.exitCode = worst;
