// Tests the failover rule language on its own: the AST of each construct, operator precedence, and that
// the canonical text parses back to the same AST (parentheses only where the tree needs them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRule, parseFailoverRules, type FailoverRule } from '../../src/config/userconfig/rules.ts';

function parse(text: string, mode = 'mirror'): { rules: FailoverRule[]; errors: string[] } {
  const errors: string[] = [];
  const rules = parseFailoverRules(text, {
    locate: (i) => ({ line: 1, col: i + 1 }),
    report: (at, message) => errors.push(`${at.col}: ${message}`),
    mode,
  });
  return { rules, errors };
}

function only(text: string): FailoverRule {
  const { rules, errors } = parse(text);
  assert.deepEqual(errors, []);
  assert.equal(rules.length, 1);
  return rules[0]!;
}

test('resources, scopes, wildcards, values, functions and both kinds of action', () => {
  assert.deepEqual(only('r: if (remote.rfs.uptodate != init) then stop();'), {
    label: 'r',
    condition: {
      kind: 'compare',
      op: '!=',
      left: { kind: 'resource', scope: 'remote', class: 'rfs', id: 'uptodate' },
      right: { kind: 'value', value: 'init' },
    },
    action: { kind: 'call', name: 'stop' },
  });
  assert.deepEqual(only('c-1: if (cluster() == down) then local.rfs.uptodate=up;').action, {
    kind: 'set',
    target: { kind: 'resource', scope: 'local', class: 'rfs', id: 'uptodate' },
    value: 'up',
  });
  assert.deepEqual(only('w: if (down == ping.?) then wait();').condition, {
    kind: 'compare',
    op: '==',
    left: { kind: 'value', value: 'down' },
    right: { kind: 'resource', class: 'ping', id: '?' },
  });
  assert.deepEqual(only('x: if (connections.192.168.1.10 == unknown) then restart();').condition, {
    kind: 'compare',
    op: '==',
    left: { kind: 'resource', class: 'connections', id: '192.168.1.10' },
    right: { kind: 'value', value: 'unknown' },
  });
});

test('! binds tighter than &&, which binds tighter than ||', () => {
  const r = only('p: if (!tcp.a == up || tcp.b == up && tcp.c == up) then swap();');
  assert.equal(r.condition.kind, 'or');
  assert.equal(formatRule(r), 'p: if (!(tcp.a == up) || tcp.b == up && tcp.c == up) then swap();');
});

test('the canonical text re-parses to the same tree', () => {
  const sources = [
    'a: if (tcp.a == up && (tcp.b == up || tcp.c == up)) then wait();',
    'b: if ((tcp.a == up || tcp.b == up) || tcp.c == up) then wait();',
    'c: if (tcp.a == up || (tcp.b == up || tcp.c == up)) then wait();',
    'd: if (tcp.a == up && (tcp.b == up && tcp.c == up)) then wait();',
    'e: if (!!(tcp.a == up) && !(tcp.b == up || tcp.c == down)) then stopstart();',
    'f: if ( ( heartbeat.* == down ) ) then rfs.uptodate = up ;',
  ];
  for (const source of sources) {
    const r = only(source);
    const printed = formatRule(r);
    assert.deepEqual(only(printed), r, source);
    assert.equal(formatRule(only(printed)), printed);
  }
  assert.equal(formatRule(only(sources[1]!)), 'b: if (tcp.a == up || tcp.b == up || tcp.c == up) then wait();');
  assert.equal(formatRule(only(sources[2]!)), 'c: if (tcp.a == up || (tcp.b == up || tcp.c == up)) then wait();');
  assert.equal(formatRule(only(sources[5]!)), 'f: if (heartbeat.* == down) then rfs.uptodate=up;');
});

test('errors are reported at the offending token and parsing resumes after the next ";"', () => {
  const { rules, errors } = parse(
    'a: if (tcp.x = up) then wait(); b: if (tcp.y == up) then wait(); c if; d: if (tcp.z == up) then heartbeat.*=up; e: if (down == up) then stop(); f: if (ip.x# == up) then stop();',
  );
  assert.deepEqual(
    rules.map((r) => r.label),
    ['b', 'd', 'e', 'f'],
  );
  // Lexical errors come first (the whole text is tokenized up front); parseUserConfig sorts by position.
  assert.deepEqual(errors, [
    '156: <failover>: unexpected character "#"',
    '14: <failover>: expected "==" or "!=" after "tcp.x", got "="',
    '68: <failover>: expected ":" after the rule label "c", got "if"',
    '97: <failover>: cannot assign to "heartbeat.*": it names several resources',
    '125: <failover>: comparison of two values ("down" and "up") is always the same',
  ]);
});
