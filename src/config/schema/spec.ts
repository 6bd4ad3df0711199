// The shape of a declarative XML schema: a table of elements, each with its attributes (typed, with
// defaults and implicit units) and its allowed children. One generic validator (validate.ts) turns a
// parsed XmlElement tree into a plain object tree following the table, and one generic printer
// (print.ts) turns such an object tree back into canonical XML. cluster.xml and userconfig.xml are both
// described this way; only rules that relate several elements are written by hand.
import type { XmlElement } from '../xml.ts';

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** How an attribute's text becomes a typed value, and back. */
export interface ValueType<T = unknown> {
  /** Converts expanded attribute text. Error messages start with `attribute "<name>"`. */
  parse(text: string, attr: string): Parsed<T>;
  /** The canonical text of a value; parse(format(v)) must give v back. */
  format(value: T): string;
  /** Whether "" is a legitimate value (otherwise the validator reports "must not be empty"). */
  allowsEmpty?: boolean;
}

/** What a computed default can look at. Values are effective texts: as written (expanded) or defaulted. */
export interface DefaultContext {
  /** An attribute of this element, if set or already defaulted (attributes default in table order). */
  own(attr: string): string | undefined;
  /** An attribute of the nearest enclosing element of that name. */
  inherited(element: string, attr: string): string | undefined;
}

export interface AttrSpec {
  /** XML attribute name. */
  name: string;
  /** Field name in the object tree; defaults to the camelCase of `name`. */
  key?: string;
  type: ValueType<any>;
  required?: boolean;
  /** Default text (parsed by `type` like written text), possibly computed from the context. */
  default?: string | ((ctx: DefaultContext) => string | undefined);
  /**
   * Accepted for compatibility with older files but ignored: not validated, not stored, not printed.
   * The text says why, for the README and for readers of the table.
   */
  legacy?: string;
  /** One line for documentation. */
  doc?: string;
}

/** Cardinality of a child element: exactly one, zero or one, zero or more, one or more. */
export type Count = 'one' | 'optional' | 'many' | 'some';

export interface TextContext {
  element: XmlElement;
  /** File position of the character at `index` of the (macro-expanded) text. */
  locate(index: number): { line: number; col: number };
  inherited(element: string, attr: string): string | undefined;
  report(at: { line: number; col: number }, message: string): void;
}

/** An element whose character data is meaningful (the failover rules). */
export interface TextSpec<T = unknown> {
  key: string;
  parse(text: string, ctx: TextContext): T;
  /** Canonical text for the printer; undefined or "" prints an empty element. */
  format(value: T, indent: string): string | undefined;
}

export interface ElementSpec {
  name: string;
  /** Field name in the parent object; defaults to the camelCase of `name` (plural for repeated ones). */
  key?: string;
  count: Count;
  /**
   * The element's fields are stored in its parent's object instead of a nested one. Used for wrapper
   * elements that carry no meaning of their own (<interface_list>, <lans>).
   */
  inline?: boolean;
  /** When absent, build it as if written empty, so consumers never see undefined (e.g. <check>). */
  materialize?: boolean;
  attrs: AttrSpec[];
  children: ElementSpec[];
  text?: TextSpec<any>;
  /** Attributes whose effective values must differ between same-named siblings. */
  uniqueBy?: string[];
  /** Groups of attributes of which exactly one must be present. */
  exactlyOneOfAttrs?: string[][];
  /** Groups of child elements of which exactly one must be present. */
  exactlyOneOfChildren?: string[][];
  /** Children that older versions allowed and we refuse with a specific explanation. */
  retired?: Record<string, string>;
  doc?: string;
}

export function camelCase(name: string): string {
  return name.replace(/[_-]([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

export function attrKey(spec: AttrSpec): string {
  return spec.key ?? camelCase(spec.name);
}

export function childKey(spec: ElementSpec): string {
  if (spec.key) return spec.key;
  const base = camelCase(spec.name);
  return spec.count === 'many' || spec.count === 'some' ? `${base}s` : base;
}
