// A small, strict XML reader for configuration files: saxes checks well-formedness, and we build a plain
// element tree in which every element and attribute knows its line and column, so that every later error
// (schema, cross-reference, failover rule) can point at the exact place in the file.
//
// Security: saxes never fetches anything. A DOCTYPE is accepted (SafeKit templates start with
// `<!DOCTYPE safe>`) but never processed: an internal subset is refused outright, so entity declarations
// cannot be smuggled in, and only the five predefined entities and character references are expanded.
import { SaxesParser } from 'saxes';
import { StayupError, type Diagnostic, type SourcePosition } from '../errors/stayup-error.ts';

export interface XmlAttribute {
  value: string;
  /** Position of the attribute's name. */
  line: number;
  col: number;
}

/**
 * Where a run of an element's `text` came from. Embedded languages (the failover rules) use it through
 * `locateInText` to turn an index in `text` back into a file position.
 */
export interface XmlTextSpan {
  /** Index in the element's `text` where this run begins. */
  start: number;
  /** The run exactly as written in the file (entities and CR LF not yet decoded). */
  raw: string;
  /** True for a CDATA section, whose raw text is taken literally. */
  cdata: boolean;
  /** Position of the run's first raw character. */
  line: number;
  col: number;
}

export interface XmlElement {
  name: string;
  attrs: Map<string, XmlAttribute>;
  children: XmlElement[];
  /** Concatenated character data and CDATA directly inside this element (not its children's). */
  text: string;
  textSpans: XmlTextSpan[];
  /** Position of the `<` of the start tag. */
  line: number;
  col: number;
}

/** Turns string offsets into 1-based line and column numbers; LF, CR LF and lone CR all end a line. */
export class LineMap {
  readonly #lineStarts: number[] = [0];

  constructor(text: string) {
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x0a) this.#lineStarts.push(i + 1);
      else if (c === 0x0d && text.charCodeAt(i + 1) !== 0x0a) this.#lineStarts.push(i + 1);
    }
  }

  position(offset: number): { line: number; col: number } {
    let lo = 0;
    let hi = this.#lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: offset - this.#lineStarts[lo]! + 1 };
  }
}

/** Parses `text` into an element tree. Malformed XML throws CONFIG_XML_MALFORMED with one diagnostic. */
export function parseXml(text: string, file: string): XmlElement {
  // A byte-order mark is invisible in editors; dropping it keeps our columns equal to what users see.
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = new LineMap(source);
  const parser = new SaxesParser({ xmlns: false, position: true });

  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let tagStart = 0;
  // Offset just past the last markup construct: the text that follows any markup starts here.
  let markupEnd = 0;
  let failure: Diagnostic | undefined;

  const fail = (message: string, at?: SourcePosition): never => {
    failure = at ? { ...at, message } : { file, line: parser.line, col: Math.max(1, parser.column), message };
    throw failure;
  };

  parser.on('error', (err) => {
    // saxes formats "line:column: message." — we keep its position and its words, not its punctuation.
    const message = err.message.replace(/^(?:[^:]*:)?\d+:\d+: /, '').replace(/\.$/, '');
    fail(message);
  });
  parser.on('doctype', (doctype) => {
    if (doctype.includes('[')) {
      const at = lines.position(Math.max(0, source.lastIndexOf('<!DOCTYPE', parser.position)));
      fail('a DOCTYPE with an internal subset is not supported (entity declarations are refused)', { file, ...at });
    }
    markupEnd = parser.position;
  });
  parser.on('xmldecl', () => {
    markupEnd = parser.position;
  });
  parser.on('processinginstruction', () => {
    markupEnd = source.indexOf('?>', source.indexOf('<?', markupEnd) + 2) + 2;
  });
  parser.on('comment', () => {
    markupEnd = source.indexOf('-->', source.indexOf('<!--', markupEnd) + 4) + 3;
  });
  parser.on('opentagstart', () => {
    // saxes reports this event somewhere after the name; the name cannot contain '<', so the nearest
    // '<' before the current position is the start of the tag.
    tagStart = source.lastIndexOf('<', parser.position - 1);
  });
  parser.on('opentag', (tag) => {
    const end = parser.position; // just past '>'
    const at = lines.position(tagStart);
    const element: XmlElement = {
      name: tag.name,
      attrs: new Map(),
      children: [],
      text: '',
      textSpans: [],
      line: at.line,
      col: at.col,
    };
    const offsets = attributeOffsets(source.slice(tagStart, end), tag.name.length);
    for (const [name, value] of Object.entries(tag.attributes)) {
      const pos = lines.position(tagStart + (offsets.get(name) ?? 0));
      element.attrs.set(name, { value, line: pos.line, col: pos.col });
    }
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(element);
    else root = element;
    if (!tag.isSelfClosing) stack.push(element);
    markupEnd = end;
  });
  parser.on('closetag', (tag) => {
    if (!tag.isSelfClosing) stack.pop();
    markupEnd = parser.position;
  });
  parser.on('text', (decoded) => {
    const owner = stack[stack.length - 1];
    // Text outside the root element can only be whitespace (saxes rejects anything else).
    if (!owner) return;
    // The text runs from the end of the previous markup to the '<' that ended it (or the end of input).
    const rawEnd = source.lastIndexOf('<', parser.position - 1);
    const raw = source.slice(markupEnd, rawEnd < markupEnd ? source.length : rawEnd);
    addText(owner, decoded, raw, false, markupEnd);
  });
  parser.on('cdata', (decoded) => {
    const owner = stack[stack.length - 1]!;
    const start = source.indexOf('<![CDATA[', markupEnd) + '<![CDATA['.length;
    const end = source.indexOf(']]>', start);
    addText(owner, decoded, source.slice(start, end), true, start);
    markupEnd = end + 3;
  });

  function addText(owner: XmlElement, decoded: string, raw: string, cdata: boolean, offset: number): void {
    const at = lines.position(offset);
    owner.textSpans.push({ start: owner.text.length, raw, cdata, line: at.line, col: at.col });
    owner.text += decoded;
  }

  try {
    parser.write(source).close();
  } catch (e) {
    if (e !== failure) throw e;
  }
  if (failure) {
    throw new StayupError('CONFIG_XML_MALFORMED', `${file}:${failure.line}:${failure.col}: ${failure.message}`, {
      diagnostics: [failure],
    });
  }
  if (!root) {
    throw new StayupError('CONFIG_XML_MALFORMED', `${file}:1:1: the document has no root element`, {
      diagnostics: [{ file, line: 1, col: 1, message: 'the document has no root element' }],
    });
  }
  return root;
}

/**
 * Offsets of each attribute name inside a start tag that saxes has already found well-formed, so a plain
 * scan is safe: names end at '=' or whitespace, values are quoted and contain no quote of their kind.
 */
function attributeOffsets(tag: string, nameLength: number): Map<string, number> {
  const offsets = new Map<string, number>();
  let i = 1 + nameLength;
  const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  while (i < tag.length) {
    while (isSpace(tag[i])) i++;
    if (tag[i] === '/' || tag[i] === '>' || i >= tag.length) break;
    const nameStart = i;
    while (i < tag.length && tag[i] !== '=' && !isSpace(tag[i])) i++;
    offsets.set(tag.slice(nameStart, i), nameStart);
    while (isSpace(tag[i])) i++;
    i++; // '='
    while (isSpace(tag[i])) i++;
    const quote = tag[i];
    const close = tag.indexOf(quote!, i + 1);
    i = close < 0 ? tag.length : close + 1;
  }
  return offsets;
}

/**
 * The file position of the character at `index` of `element.text`. Walks the raw text of the run that
 * holds it, counting an entity or character reference and a CR LF pair as one decoded character, so the
 * answer is exact even for text with escapes.
 */
export function locateInText(element: XmlElement, index: number): { line: number; col: number } {
  let span: XmlTextSpan | undefined;
  for (const s of element.textSpans) if (s.start <= index) span = s;
  if (!span) return { line: element.line, col: element.col };
  let line = span.line;
  let col = span.col;
  let decoded = span.start;
  let i = 0;
  while (decoded < index && i < span.raw.length) {
    const c = span.raw[i]!;
    let width = 1;
    if (c === '&' && !span.cdata) {
      const semi = span.raw.indexOf(';', i);
      if (semi > i) width = semi - i + 1;
    } else if (c === '\r' && span.raw[i + 1] === '\n') {
      width = 2;
    }
    if (c === '\n' || c === '\r') {
      line++;
      col = 1;
    } else {
      col += width;
    }
    i += width;
    // Astral characters take two UTF-16 units in both raw and decoded text, except when written as a
    // character reference; that case is too rare in configuration files to be worth the bookkeeping.
    decoded++;
  }
  return { line, col };
}
