// The /proc snapshot: a fake tree for vanished and odd entries, and the real /proc for the command name
// (comm, truncated to 15 characters, not argv[0]) and the argument string.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  formatProcessTable,
  parseCmdline,
  parseStatLine,
  readProcess,
  readProcessTable,
} from '../../src/errd/process-table.ts';
import { marker, waitFor } from './helpers.ts';

const stat = (pid: number, comm: string, state = 'S', ppid = 1, start = 4242): string =>
  `${pid} (${comm}) ${state} ${ppid} ${pid} ${pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 ${start} 1000 100 18446744073709551615\n`;

function fakeProc(t: { after(fn: () => void): void }): string {
  const root = mkdtempSync(join(tmpdir(), 'stayup-errd-proc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const entry = (name: string, files: Record<string, string | Buffer>): void => {
    mkdirSync(join(root, name));
    for (const [f, c] of Object.entries(files)) writeFileSync(join(root, name, f), c);
  };
  entry('100', { stat: stat(100, 'my (odd) app', 'S', 1, 777), cmdline: Buffer.from('/opt/my app\0--flag\0value\0') });
  entry('101', {}); // vanished: the directory is listed but its files are gone
  entry('102', { stat: stat(102, 'halfgone') }); // vanished between stat and cmdline
  entry('103', { stat: '103 (trunc', cmdline: 'x\0' }); // a torn stat line
  entry('104', { stat: stat(104, 'defunct', 'Z'), cmdline: '' });
  entry('105', { stat: stat(105, 'kworker/0:1', 'I', 2), cmdline: '' });
  entry('20', { stat: stat(20, 'settitle'), cmdline: 'title without nul' });
  entry('self', { stat: stat(1, 'ignored') });
  entry('0100', { stat: stat(100, 'notapid') });
  mkdirSync(join(root, 'sys'));
  return root;
}

describe('process table: parsing', () => {
  it('reads pid, command name, argv, args, state, ppid and start time; skips what vanished', (t) => {
    const root = fakeProc(t);
    const table = readProcessTable({ procRoot: root });
    assert.deepEqual(
      table.map((p) => p.pid),
      [20, 100, 104, 105],
    );
    assert.deepEqual(table[1], {
      pid: 100,
      name: 'my (odd) app',
      argv: ['/opt/my app', '--flag', 'value'],
      args: '/opt/my app --flag value',
      startTime: 777,
      state: 'S',
      ppid: 1,
    });
    assert.deepEqual(table[0]!.argv, ['title without nul']);
    assert.equal(table[2]!.state, 'Z');
    assert.deepEqual(table[3]!.argv, []);
    assert.equal(table[3]!.args, '');
    assert.equal(readProcess(101, { procRoot: root }), undefined);
    assert.equal(readProcess(999, { procRoot: root }), undefined);
  });

  it('an unreadable procfs is an empty table', () => {
    assert.deepEqual(readProcessTable({ procRoot: '/nonexistent/stayup-proc' }), []);
  });

  it('stat and cmdline parsers', () => {
    assert.deepEqual(parseStatLine(stat(7, 'a) b (c', 'R', 3, 99)), { comm: 'a) b (c', state: 'R', ppid: 3, startTime: 99 });
    assert.equal(parseStatLine(''), undefined);
    assert.equal(parseStatLine('7 (x) S 1 2'), undefined);
    assert.deepEqual(parseCmdline(Buffer.from('a\0\0b\0')), ['a', '', 'b']);
    assert.deepEqual(parseCmdline(Buffer.alloc(0)), []);
  });

  it('formats the errdpoll_running dump without zombies', (t) => {
    const root = fakeProc(t);
    assert.equal(
      formatProcessTable(readProcessTable({ procRoot: root })),
      ['name=settitle pid=20 args=title without nul', 'name=my (odd) app pid=100 args=/opt/my app --flag value', 'name=kworker/0:1 pid=105 args='].join('\n'),
    );
  });
});

describe('process table: the real /proc', () => {
  it('the name is the kernel command name: the exec’d file’s basename cut to 15 characters, not argv[0]', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'stayup-errd-comm-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const exe = join(dir, 'errd_long_program_name');
    symlinkSync('/bin/sleep', exe);
    const m = marker();
    const child = spawn(exe, ['100000', `0.${m}`], { stdio: 'ignore', argv0: 'renamed-argv0' });
    child.on('error', () => {});
    t.after(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    });
    const pid = child.pid!;
    // Wait until the child has exec'd (before that, /proc shows node's fork).
    await waitFor(() => readProcess(pid)?.name === 'errd_long_progr', 'the child to exec');
    const p = readProcessTable().find((x) => x.pid === pid);
    assert.ok(p, 'listed');
    assert.equal(p.name, 'errd_long_progr');
    assert.equal(p.name.length, 15);
    assert.deepEqual(p.argv, ['renamed-argv0', '100000', `0.${m}`]);
    assert.equal(p.args, `renamed-argv0 100000 0.${m}`);
    assert.equal(p.ppid, process.pid);
    assert.ok(p.startTime > 0);
    assert.ok(['S', 'R'].includes(p.state));
  });

  it('lists this process', () => {
    const me = readProcessTable().find((p) => p.pid === process.pid);
    assert.ok(me);
    assert.ok(me.argv.length > 0);
  });
});
