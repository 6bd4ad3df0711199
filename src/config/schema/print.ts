// The one generic printer: turns an object tree built by validate.ts back into canonical XML, following
// the same ElementSpec table. Attributes and children come out in table order, every value in its
// canonical text (durations with explicit units), so the output is stable and re-parses to the same tree.
import { attrKey, childKey, type ElementSpec } from './spec.ts';

const indentUnit = '  ';

export function printDocument(spec: ElementSpec, value: Record<string, unknown>): string {
  return `${printElement(spec, value, '').join('\n')}\n`;
}

function printElement(spec: ElementSpec, obj: Record<string, unknown>, indent: string): string[] {
  const attrs = spec.attrs
    .filter((a) => !a.legacy && obj[attrKey(a)] !== undefined)
    .map((a) => ` ${a.name}="${escapeAttr(a.type.format(obj[attrKey(a)]))}"`)
    .join('');
  const inner = indent + indentUnit;
  const body: string[] = [];
  for (const cs of spec.children) {
    if (cs.inline) {
      if (cs.count === 'one' || cs.count === 'some' || hasContent(cs, obj)) body.push(...printElement(cs, obj, inner));
      continue;
    }
    const v = obj[childKey(cs)];
    if (Array.isArray(v)) for (const item of v) body.push(...printElement(cs, item as Record<string, unknown>, inner));
    else if (v !== undefined) body.push(...printElement(cs, v as Record<string, unknown>, inner));
  }
  const text = spec.text ? spec.text.format(obj[spec.text.key], inner) : undefined;
  if (text) {
    // CDATA keeps the rule operators (&&, <) readable; the text formatter guarantees no "]]>" inside.
    return [`${indent}<${spec.name}${attrs}><![CDATA[`, text, `${indent}]]></${spec.name}>`];
  }
  if (body.length === 0) return [`${indent}<${spec.name}${attrs}/>`];
  return [`${indent}<${spec.name}${attrs}>`, ...body, `${indent}</${spec.name}>`];
}

/** Whether an optional inline wrapper has anything to print (otherwise it is left out). */
function hasContent(spec: ElementSpec, obj: Record<string, unknown>): boolean {
  if (spec.attrs.some((a) => !a.legacy && obj[attrKey(a)] !== undefined)) return true;
  return spec.children.some((cs) => {
    if (cs.inline) return hasContent(cs, obj);
    const v = obj[childKey(cs)];
    return Array.isArray(v) ? v.length > 0 : v !== undefined;
  });
}

/** Escapes for a double-quoted attribute; whitespace controls too, which XML would turn into spaces. */
export function escapeAttr(text: string): string {
  return text.replace(/[&<>"\t\n\r]/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : `&#${c.charCodeAt(0)};`,
  );
}
