// Tests the positioned XML reader: element and attribute positions, text runs mapped back to the file
// (through entities, CR LF and CDATA), and the exact diagnostics for malformed input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { locateInText, parseXml } from '../../src/config/xml.ts';
import { StayupError } from '../../src/errors/stayup-error.ts';

function malformed(text: string): string {
  try {
    parseXml(text, 'userconfig.xml');
  } catch (e) {
    assert.ok(e instanceof StayupError);
    assert.equal(e.code, 'CONFIG_XML_MALFORMED');
    assert.equal(e.diagnostics.length, 1);
    return e.message;
  }
  assert.fail('expected a malformed-XML error');
}

test('elements and attributes carry the position of their first character', () => {
  const root = parseXml('<!DOCTYPE safe>\n<safe a="1"\n   bb = \'x&amp;y\'>\n  <x/><y\tz="2"/></safe>', 'f.xml');
  assert.equal(root.name, 'safe');
  assert.deepEqual([root.line, root.col], [2, 1]);
  assert.deepEqual(root.attrs.get('a'), { value: '1', line: 2, col: 7 });
  assert.deepEqual(root.attrs.get('bb'), { value: 'x&y', line: 3, col: 4 });
  const [x, y] = root.children;
  assert.deepEqual([x!.name, x!.line, x!.col], ['x', 4, 3]);
  assert.deepEqual([y!.name, y!.line, y!.col], ['y', 4, 7]);
  assert.deepEqual(y!.attrs.get('z'), { value: '2', line: 4, col: 10 });
});

test('text positions survive entities, CR LF line ends and CDATA sections', () => {
  const src = '<r>\r\n  a&lt;b <![CDATA[c&&\r\nd]]></r>';
  const r = parseXml(src, 'f.xml');
  assert.equal(r.text, '\n  a<b c&&\nd');
  const at = (ch: string): [number, number] => {
    const p = locateInText(r, r.text.indexOf(ch));
    return [p.line, p.col];
  };
  assert.deepEqual(at('a'), [2, 3]);
  assert.deepEqual(at('<'), [2, 4]);
  assert.deepEqual(at('b'), [2, 8]);
  assert.deepEqual(at('c'), [2, 19]);
  assert.deepEqual(at('&'), [2, 20]);
  assert.deepEqual(at('d'), [3, 1]);
});

test('a byte-order mark does not shift columns', () => {
  const r = parseXml('\ufeff<safe a="1"/>', 'f.xml');
  assert.deepEqual(r.attrs.get('a'), { value: '1', line: 1, col: 7 });
});

test('malformed XML gives one diagnostic at the saxes position', () => {
  assert.equal(malformed('<safe>\n  <heart>\n  </heartbeat>\n</safe>'), 'userconfig.xml:3:14: unexpected close tag');
  assert.equal(malformed('<safe>\n  <a b="1" b="2"/>\n</safe>'), 'userconfig.xml:2:18: duplicate attribute: b');
  assert.equal(malformed('<safe>&nbsp;</safe>'), 'userconfig.xml:1:12: undefined entity');
  assert.equal(malformed('<safe>'), 'userconfig.xml:1:6: unclosed tag: safe');
  assert.equal(malformed(''), 'userconfig.xml:1:1: document must contain a root element');
});

test('a DOCTYPE is accepted but an internal subset (entity declarations) is refused', () => {
  assert.equal(parseXml('<!DOCTYPE safe>\n<safe/>', 'f.xml').name, 'safe');
  assert.equal(
    malformed('<!DOCTYPE safe [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<safe>&x;</safe>'),
    'userconfig.xml:1:1: a DOCTYPE with an internal subset is not supported (entity declarations are refused)',
  );
});
