// Tests duration attributes: explicit units, legacy implicit units, rounding, and the error texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration, type DurationRule } from '../../src/config/duration.ts';

const msRule: DurationRule = { implicitUnit: 'ms' };
const sRule: DurationRule = { implicitUnit: 's' };
const hZero: DurationRule = { implicitUnit: 'h', allowZero: true };

test('explicit units and implicit units convert to whole milliseconds', () => {
  const cases: Array<[string, DurationRule, number]> = [
    ['700ms', sRule, 700],
    ['700', msRule, 700],
    ['30', sRule, 30_000],
    ['1.5s', msRule, 1_500],
    ['.5s', msRule, 500],
    ['24h', sRule, 86_400_000],
    ['24', hZero, 86_400_000],
    ['2d', sRule, 172_800_000],
    ['15m', sRule, 900_000],
    ['1500us', sRule, 2],
    ['1499us', sRule, 1],
    ['0', hZero, 0],
    [' 10s ', sRule, 10_000],
  ];
  for (const [text, rule, ms] of cases) {
    assert.deepEqual(parseDuration(text, 'x', rule), { ok: true, ms }, text);
  }
});

test('bad durations are refused with a message naming the attribute', () => {
  const cases: Array<[string, DurationRule, string]> = [
    ['700sec', msRule, 'attribute "pulse": unknown unit "sec" in "700sec" (use d, h, m, s, ms or us)'],
    ['5S', msRule, 'attribute "pulse": unknown unit "S" in "5S" (use d, h, m, s, ms or us)'],
    ['abc', msRule, 'attribute "pulse" must be a duration such as "700ms", "30s" or "24h", got "abc"'],
    ['-5s', msRule, 'attribute "pulse" must be a duration such as "700ms", "30s" or "24h", got "-5s"'],
    ['7 s', msRule, 'attribute "pulse" must be a duration such as "700ms", "30s" or "24h", got "7 s"'],
    ['', msRule, 'attribute "pulse" must be a duration such as "700ms", "30s" or "24h", got ""'],
    ['0', msRule, 'attribute "pulse" must not be zero'],
    ['200us', msRule, 'attribute "pulse": "200us" rounds to 0ms, which is not allowed'],
    ['4000d', msRule, 'attribute "pulse": "4000d" is too long (at most 3650d)'],
  ];
  for (const [text, rule, message] of cases) {
    assert.deepEqual(parseDuration(text, 'pulse', rule), { ok: false, message }, text);
  }
});

test('formatting picks the largest exact unit and parses back to the same value', () => {
  const cases: Array<[number, string]> = [
    [0, '0s'],
    [700, '700ms'],
    [1_500, '1500ms'],
    [30_000, '30s'],
    [60_000, '1m'],
    [90_000, '90s'],
    [86_400_000, '24h'],
    [220_000, '220s'],
  ];
  for (const [ms, text] of cases) {
    assert.equal(formatDuration(ms), text);
    for (const unit of ['ms', 's', 'm', 'h', 'd', 'us'] as const) {
      assert.deepEqual(parseDuration(text, 'x', { implicitUnit: unit, allowZero: true }), { ok: true, ms });
    }
  }
  assert.throws(() => formatDuration(1.5), RangeError);
});
