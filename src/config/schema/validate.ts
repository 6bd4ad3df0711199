// The one generic validator: walks an XmlElement tree along an ElementSpec table, reports every problem
// as a positioned diagnostic (it never stops at the first), and builds the plain object tree that the
// typed configuration interfaces describe.
import type { Diagnostic } from '../../errors/stayup-error.ts';
import { closest } from '../did-you-mean.ts';
import { locateInText, type XmlElement } from '../xml.ts';
import { attrKey, childKey, type AttrSpec, type DefaultContext, type ElementSpec } from './spec.ts';

/** Macro expansion, supplied by the caller (userconfig.xml has macros, cluster.xml has none). */
export interface Expander {
  attr(element: XmlElement, attr: string, raw: string): string;
  /** Expands element text, keeping a map from each expanded index back to the raw text index. */
  text(raw: string): { text: string; sourceIndex(index: number): number };
}

export const noExpansion: Expander = {
  attr: (_e, _a, raw) => raw,
  text: (raw) => ({ text: raw, sourceIndex: (i) => i }),
};

/**
 * Remembers which XML element(s) each built object came from, so that cross-element checks can point
 * at the right line. Kept outside the objects, so configurations compare equal whatever their layout.
 */
export class SourceMap {
  readonly #elements = new WeakMap<object, XmlElement[]>();

  add(obj: object, element: XmlElement): void {
    const list = this.#elements.get(obj);
    if (list) list.push(element);
    else this.#elements.set(obj, [element]);
  }

  /** The element an object was built from; with `name`, the inlined element of that name. */
  element(obj: object, name?: string): XmlElement | undefined {
    const list = this.#elements.get(obj);
    return name === undefined ? list?.[0] : list?.find((e) => e.name === name);
  }

  /** Position of the element (or of an inlined one), falling back to the object's own element. */
  at(obj: object, name?: string): { line: number; col: number } {
    const e = this.element(obj, name) ?? this.element(obj);
    return e ? { line: e.line, col: e.col } : { line: 1, col: 1 };
  }

  /** Position of a written attribute, falling back to its element when the value was defaulted. */
  attr(obj: object, attr: string): { line: number; col: number } {
    const list = this.#elements.get(obj) ?? [];
    for (const e of list) {
      const a = e.attrs.get(attr);
      if (a) return { line: a.line, col: a.col };
    }
    return this.at(obj);
  }

  /** Whether the attribute was written in the file (as opposed to defaulted). */
  written(obj: object, attr: string): boolean {
    return (this.#elements.get(obj) ?? []).some((e) => e.attrs.has(attr));
  }
}

export interface ValidationResult {
  value: Record<string, unknown>;
  diagnostics: Diagnostic[];
  sources: SourceMap;
}

interface Scope {
  name: string;
  texts: Map<string, string>;
  parent: Scope | undefined;
}

/** Validates a whole document against its root spec. */
export function validateDocument(
  root: XmlElement,
  spec: ElementSpec,
  options: { file: string; expander?: Expander },
): ValidationResult {
  const validator = new Validator(spec, options.file, options.expander ?? noExpansion);
  const value: Record<string, unknown> = {};
  if (root.name !== spec.name) {
    validator.report(root, `<${root.name}>: the root element must be <${spec.name}>`);
  } else {
    validator.build(root, spec, undefined, value);
  }
  return { value, diagnostics: sortDiagnostics(validator.diagnostics), sources: validator.sources };
}

/** Sorts by position; diagnostics at the same place keep the order in which they were found. */
export function sortDiagnostics(diagnostics: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return diagnostics
    .map((d, i) => ({ d, i }))
    .sort((a, b) => a.d.line - b.d.line || a.d.col - b.d.col || a.i - b.i)
    .map(({ d }) => d)
    .filter((d) => {
      const k = `${d.line}:${d.col}:${d.message}`;
      return seen.has(k) ? false : (seen.add(k), true);
    });
}

class Validator {
  readonly diagnostics: Diagnostic[] = [];
  readonly sources = new SourceMap();
  /** For "<x> belongs in <y>" hints: every element name of the table and the parents that allow it. */
  readonly #parentsOf = new Map<string, Set<string>>();
  readonly #scopes = new WeakMap<object, Scope>();

  constructor(
    root: ElementSpec,
    readonly file: string,
    readonly expander: Expander,
  ) {
    const index = (spec: ElementSpec): void => {
      for (const c of spec.children) {
        let parents = this.#parentsOf.get(c.name);
        if (!parents) this.#parentsOf.set(c.name, (parents = new Set()));
        if (parents.has(spec.name)) continue;
        parents.add(spec.name);
        index(c);
      }
    };
    index(root);
  }

  report(at: { line: number; col: number }, message: string): void {
    this.diagnostics.push({ file: this.file, line: at.line, col: at.col, message });
  }

  /** Validates `el` against `spec`, writing its fields into `obj` (the parent's object when inline). */
  build(el: XmlElement, spec: ElementSpec, parent: Scope | undefined, obj: Record<string, unknown>): void {
    this.sources.add(obj, el);
    const scope: Scope = { name: spec.name, texts: new Map(), parent };
    if (!spec.inline) this.#scopes.set(obj, scope);
    this.attributes(el, spec, scope, obj);
    this.children(el, spec, scope, obj);
    this.text(el, spec, scope, obj);
  }

  private attributes(el: XmlElement, spec: ElementSpec, scope: Scope, obj: Record<string, unknown>): void {
    const byName = new Map(spec.attrs.map((a) => [a.name, a]));
    const written = new Map<string, string>();
    for (const [name, attr] of el.attrs) {
      const a = byName.get(name);
      if (!a) {
        const guess = closest(name, spec.attrs.filter((x) => !x.legacy).map((x) => x.name));
        const tail = guess ? `; did you mean "${guess}"?` : '';
        this.report(attr, `<${el.name}>: unknown attribute "${name}"${tail}`);
      } else if (!a.legacy) {
        written.set(name, this.expander.attr(el, name, attr.value));
      }
    }

    // Only values that parsed go into the scope, so a computed default never inherits a bad value (which
    // would report the same mistake a second time, at the wrong element).
    const context: DefaultContext = {
      own: (attr) => scope.texts.get(attr),
      inherited: (element, attr) => lookup(scope.parent, element, attr),
    };
    for (const a of spec.attrs) {
      if (a.legacy) continue;
      let text = written.get(a.name);
      if (text === undefined) {
        if (a.required) {
          this.report(el, `<${el.name}>: attribute "${a.name}" is required`);
          continue;
        }
        text = typeof a.default === 'function' ? a.default(context) : a.default;
        if (text === undefined) continue;
      }
      if (this.attribute(el, a, text, obj)) scope.texts.set(a.name, text);
    }

    for (const group of spec.exactlyOneOfAttrs ?? []) {
      const present = group.filter((n) => el.attrs.has(n));
      const names = group.map((n) => `"${n}"`).join(' or ');
      if (present.length === 0) this.report(el, `<${el.name}>: one of the attributes ${names} is required`);
      if (present.length > 1) {
        const second = el.attrs.get(present[1]!)!;
        this.report(second, `<${el.name}>: attributes ${present.map((n) => `"${n}"`).join(' and ')} cannot be used together`);
      }
    }
  }

  /** Parses one attribute into `obj`; false (with a diagnostic) when the text is not valid. */
  private attribute(el: XmlElement, a: AttrSpec, text: string, obj: Record<string, unknown>): boolean {
    const written = el.attrs.get(a.name);
    const at = written ?? el;
    const origin = written && written.value !== text ? ` (expanded from "${written.value}")` : '';
    if (text === '' && !a.type.allowsEmpty) {
      this.report(at, `<${el.name}>: attribute "${a.name}" must not be empty${origin}`);
      return false;
    }
    const r = a.type.parse(text, a.name);
    if (r.ok) obj[attrKey(a)] = r.value;
    else this.report(at, `<${el.name}>: ${r.message}${origin}`);
    return r.ok;
  }

  private children(el: XmlElement, spec: ElementSpec, scope: Scope, obj: Record<string, unknown>): void {
    const specs = new Map(spec.children.map((c) => [c.name, c]));
    const groups = new Map<string, XmlElement[]>();
    // Names an unknown child was taken for ("did you mean <x>?"): a missing <x> is then not reported
    // again, the typo is the one mistake.
    const suggested = new Set<string>();
    for (const child of el.children) {
      const retired = spec.retired?.[child.name];
      if (retired !== undefined) {
        this.report(child, `<${child.name}>: ${retired}`);
      } else if (!specs.has(child.name)) {
        const guess = this.unknownElement(child, el, spec);
        if (guess) suggested.add(guess);
      } else {
        const list = groups.get(child.name);
        if (list) list.push(child);
        else groups.set(child.name, [child]);
      }
    }

    for (const cs of spec.children) {
      const els = groups.get(cs.name) ?? [];
      if ((cs.count === 'one' || cs.count === 'optional') && els.length > 1) {
        for (const extra of els.slice(1)) this.report(extra, `<${cs.name}>: may appear only once in <${el.name}>`);
      }
      if (els.length === 0 && !suggested.has(cs.name)) {
        if (cs.count === 'one') this.report(el, `<${el.name}>: element <${cs.name}> is required`);
        if (cs.count === 'some') this.report(el, `<${el.name}>: at least one <${cs.name}> is required`);
      }

      if (cs.inline) {
        if (els[0]) this.build(els[0], cs, scope, obj);
        else this.absentInline(el, cs, scope, obj);
      } else if (cs.count === 'many' || cs.count === 'some') {
        const built = els.map((e) => {
          const o: Record<string, unknown> = {};
          this.build(e, cs, scope, o);
          return o;
        });
        obj[childKey(cs)] = built;
        this.unique(cs, built);
      } else if (els[0]) {
        const o: Record<string, unknown> = {};
        this.build(els[0], cs, scope, o);
        obj[childKey(cs)] = o;
      } else if (cs.materialize) {
        obj[childKey(cs)] = this.materialize(el, cs, scope);
      }
    }

    for (const group of spec.exactlyOneOfChildren ?? []) {
      const present = group.filter((n) => groups.has(n));
      const names = group.map((n) => `<${n}>`).join(' or ');
      if (present.length === 0) this.report(el, `<${el.name}>: one of ${names} is required`);
      if (present.length > 1) {
        this.report(groups.get(present[1]!)![0]!, `<${el.name}>: ${present.map((n) => `<${n}>`).join(' and ')} cannot be used together`);
      }
    }
  }

  /** Reports a child the table does not allow here; returns the name it suggested instead, if any. */
  private unknownElement(child: XmlElement, el: XmlElement, spec: ElementSpec): string | undefined {
    const parents = this.#parentsOf.get(child.name);
    if (parents) {
      const where = [...parents].map((p) => `<${p}>`).join(' or ');
      this.report(child, `<${child.name}>: not allowed in <${el.name}>; it belongs in ${where}`);
      return undefined;
    }
    const guess = closest(child.name, spec.children.map((c) => c.name));
    const tail = guess ? `; did you mean <${guess}>?` : '';
    this.report(child, `<${child.name}>: unknown element in <${el.name}>${tail}`);
    return guess;
  }

  /** An absent inline wrapper still gives its parent empty lists, so the object shape never varies. */
  private absentInline(parentEl: XmlElement, spec: ElementSpec, scope: Scope, obj: Record<string, unknown>): void {
    for (const cs of spec.children) {
      if (cs.inline) this.absentInline(parentEl, cs, scope, obj);
      else if (cs.count === 'many' || cs.count === 'some') obj[childKey(cs)] = [];
      else if (cs.materialize) obj[childKey(cs)] = this.materialize(parentEl, cs, scope);
    }
  }

  private materialize(parentEl: XmlElement, spec: ElementSpec, scope: Scope): Record<string, unknown> {
    const synthetic: XmlElement = {
      name: spec.name,
      attrs: new Map(),
      children: [],
      text: '',
      textSpans: [],
      line: parentEl.line,
      col: parentEl.col,
    };
    const o: Record<string, unknown> = {};
    this.build(synthetic, spec, scope, o);
    return o;
  }

  private unique(spec: ElementSpec, siblings: Record<string, unknown>[]): void {
    for (const attr of spec.uniqueBy ?? []) {
      const first = new Map<string, Record<string, unknown>>();
      for (const sibling of siblings) {
        const text = this.#scopes.get(sibling)?.texts.get(attr);
        if (text === undefined) continue;
        const earlier = first.get(text);
        if (!earlier) {
          first.set(text, sibling);
          continue;
        }
        const was = this.sources.attr(earlier, attr);
        this.report(this.sources.attr(sibling, attr), `<${spec.name}>: ${attr} "${text}" is already used at ${was.line}:${was.col}`);
      }
    }
  }

  private text(el: XmlElement, spec: ElementSpec, scope: Scope, obj: Record<string, unknown>): void {
    if (spec.text) {
      const expanded = this.expander.text(el.text);
      obj[spec.text.key] = spec.text.parse(expanded.text, {
        element: el,
        locate: (i) => locateInText(el, expanded.sourceIndex(i)),
        inherited: (element, attr) => lookup(scope, element, attr),
        report: (at, message) => this.report(at, message),
      });
      return;
    }
    const first = el.text.search(/\S/);
    if (first >= 0) {
      const excerpt = el.text.trim().split(/\s+/).join(' ');
      const shown = excerpt.length > 20 ? `${excerpt.slice(0, 20)}…` : excerpt;
      this.report(locateInText(el, first), `<${el.name}>: unexpected text "${shown}"`);
    }
  }
}

function lookup(scope: Scope | undefined, element: string, attr: string): string | undefined {
  for (let s = scope; s; s = s.parent) if (s.name === element) return s.texts.get(attr);
  return undefined;
}
