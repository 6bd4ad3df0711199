// Macros: <macro name="X" value="v"/> makes %X% stand for v in every attribute value and in the failover
// rules. %NAME% also expands environment variables (from the env the caller injects, never implicitly
// from process.env), and a macro wins over an environment variable of the same name.
//
// Decisions (the reference leaves them open):
//   - A %NAME% that is neither a macro nor an environment variable is left as written, not an error:
//     '%' is legitimate in regular expressions and script arguments, and SafeKit templates ship with
//     macros for the user to fill in. A value left unexpanded still has to pass its attribute's type, so
//     `addr="%VIP%"` with no VIP is reported as an invalid address.
//   - Expansion is one left-to-right pass: replaced text is not expanded again, so a value cannot recurse.
//   - A macro's own value may use the environment and the macros defined above it.
//   - Names are [A-Za-z_][A-Za-z0-9_]*, like the environment variables they may shadow.
import type { Expander } from '../schema/validate.ts';
import type { XmlElement } from '../xml.ts';
import type { Macro } from './types.ts';

export type Environment = Record<string, string | undefined>;

const reference = /%([A-Za-z_][A-Za-z0-9_]*)%/g;

export interface MacroTable {
  /** Macros in file order, values expanded. */
  macros: Macro[];
  expander: Expander;
}

/** Reads the <macro> children of <safe> (the schema checks their syntax) and builds the expander. */
export function collectMacros(root: XmlElement, env: Environment): MacroTable {
  const values = new Map<string, string>();
  const macroValues = new WeakMap<XmlElement, string>();
  const macros: Macro[] = [];
  for (const el of root.children) {
    if (el.name !== 'macro') continue;
    const name = el.attrs.get('name')?.value;
    const raw = el.attrs.get('value')?.value;
    if (name === undefined || raw === undefined) continue;
    const value = expand(raw, values, env).text;
    macroValues.set(el, value);
    macros.push({ name, value });
    if (!values.has(name)) values.set(name, value);
  }

  const expander: Expander = {
    attr: (el, attr, raw) => (el.name === 'macro' && attr === 'value' ? (macroValues.get(el) ?? raw) : expand(raw, values, env).text),
    text: (raw) => {
      const { text, sourceIndex } = expand(raw, values, env);
      return { text, sourceIndex: (i) => sourceIndex[i] ?? raw.length };
    },
  };
  return { macros, expander };
}

/** Expands %NAME% references; `sourceIndex[i]` is the raw index the i-th output character came from. */
export function expand(
  raw: string,
  macros: ReadonlyMap<string, string>,
  env: Environment,
): { text: string; sourceIndex: number[] } {
  let text = '';
  const sourceIndex: number[] = [];
  let last = 0;
  for (const m of raw.matchAll(reference)) {
    const replacement = macros.get(m[1]!) ?? env[m[1]!];
    if (replacement === undefined) continue;
    const at = m.index;
    for (let i = last; i < at; i++) sourceIndex.push(i);
    text += raw.slice(last, at);
    // Characters that came from a macro point at the '%' that introduced it.
    for (let i = 0; i < replacement.length; i++) sourceIndex.push(at);
    text += replacement;
    last = at + m[0].length;
  }
  for (let i = last; i < raw.length; i++) sourceIndex.push(i);
  text += raw.slice(last);
  return { text, sourceIndex };
}
