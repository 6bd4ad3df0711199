// The attribute value types of the configuration schemas. Each turns expanded attribute text into a typed
// value with a precise error message, and formats the value back into canonical text.
import { addressKind, isMacAddress, isNetmask, unbracket } from '../address.ts';
import { closest } from '../did-you-mean.ts';
import { formatDuration, parseDuration, type DurationRule } from '../duration.ts';
import type { Parsed, ValueType } from './spec.ts';

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = (message: string): Parsed<never> => ({ ok: false, message });

/** Free text. Empty only when `allowEmpty`. */
export function text(options: { allowEmpty?: boolean } = {}): ValueType<string> {
  return { parse: (t) => ok(t), format: (v) => v, allowsEmpty: options.allowEmpty ?? false };
}

/** Text accepted by a pattern or predicate, with `what` describing it in the error message. */
export function pattern(test: RegExp | ((t: string) => boolean), what: string): ValueType<string> {
  const accepts = typeof test === 'function' ? test : (t: string) => test.test(t);
  return {
    parse: (t, attr) => (accepts(t) ? ok(t) : bad(`attribute "${attr}" must be ${what}, got "${t}"`)),
    format: (v) => v,
  };
}

/** Names of resources, lans, nodes and checkers: letters, digits, '_' and '-', starting alphanumeric. */
export const identifier = pattern(
  /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/,
  'a name of letters, digits, "_" or "-" (at most 64, starting with a letter or digit)',
);

/** Names exported to scripts as environment variables. */
export const envName = pattern(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a variable name of letters, digits and "_"');

function oneOf(values: readonly string[]): string {
  const quoted = values.map((v) => `"${v}"`);
  return quoted.length <= 2 ? quoted.join(' or ') : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
}

function hint(word: string, candidates: readonly string[]): string {
  const guess = closest(word, candidates);
  return guess === undefined ? '' : `; did you mean "${guess}"?`;
}

/** One of a fixed set of keywords (case-sensitive, as SafeKit is). */
export function keyword<const V extends string>(values: readonly V[]): ValueType<V> {
  return {
    parse: (t, attr) =>
      (values as readonly string[]).includes(t)
        ? ok(t as V)
        : bad(`attribute "${attr}" must be ${oneOf(values)}, got "${t}"${hint(t, values)}`),
    format: (v) => v,
  };
}

/** A two-valued switch stored as a boolean: on/off or yes/no, as each attribute is documented. */
export function flag(yes: 'on' | 'yes', no: 'off' | 'no'): ValueType<boolean> {
  return {
    parse: (t, attr) =>
      t === yes ? ok(true) : t === no ? ok(false) : bad(`attribute "${attr}" must be "${yes}" or "${no}", got "${t}"`),
    format: (v) => (v ? yes : no),
  };
}
export const onOff = flag('on', 'off');
export const yesNo = flag('yes', 'no');

export function integer(range: { min?: number; max?: number } = {}): ValueType<number> {
  const { min, max } = range;
  return {
    parse: (t, attr) => {
      if (!/^[+-]?\d+$/.test(t.trim())) return bad(`attribute "${attr}" must be an integer, got "${t}"`);
      const n = Number(t.trim());
      if (!Number.isSafeInteger(n)) return bad(`attribute "${attr}" is too large, got "${t}"`);
      if (min !== undefined && max !== undefined && (n < min || n > max)) {
        return bad(`attribute "${attr}" must be between ${min} and ${max}, got "${t}"`);
      }
      if (min !== undefined && n < min) return bad(`attribute "${attr}" must be at least ${min}, got "${t}"`);
      if (max !== undefined && n > max) return bad(`attribute "${attr}" must be at most ${max}, got "${t}"`);
      return ok(n);
    },
    format: (v) => String(v),
  };
}

export const port = integer({ min: 1, max: 65535 });

/** A duration in milliseconds; a bare number is in `rule.implicitUnit`. Printed with an explicit unit. */
export function duration(rule: DurationRule): ValueType<number> {
  return {
    parse: (t, attr) => {
      const r = parseDuration(t, attr, rule);
      return r.ok ? ok(r.ms) : bad(r.message);
    },
    format: formatDuration,
  };
}

/** An IPv4 or IPv6 literal or a host name. Brackets around IPv6 are accepted and dropped. */
export const address: ValueType<string> = {
  parse: (t, attr) =>
    addressKind(t) ? ok(unbracket(t)) : bad(`attribute "${attr}" must be an IPv4 or IPv6 address or a host name, got "${t}"`),
  format: (v) => v,
};

/** An IP literal only (where a host name would be resolved at the wrong time, e.g. interface checks). */
export const ipAddress: ValueType<string> = {
  parse: (t, attr) => {
    const kind = addressKind(t);
    return kind === 'ipv4' || kind === 'ipv6' ? ok(unbracket(t)) : bad(`attribute "${attr}" must be an IP address, got "${t}"`);
  },
  format: (v) => v,
};

/** `*` (any) or a value of `inner`. */
export function anyOr<T>(inner: ValueType<T>): ValueType<T | '*'> {
  return {
    parse: (t, attr) => (t === '*' ? ok('*') : inner.parse(t, attr)),
    format: (v) => (v === '*' ? '*' : inner.format(v)),
  };
}

export const macAddress = pattern(isMacAddress, 'a MAC address such as "5A:FE:C0:A8:01:0A"');

export const netmask = pattern(isNetmask, 'a prefix length or a dotted netmask');

/** Linux interface names: 1-15 characters, no '/', ':' or whitespace. */
export const interfaceName = pattern(/^[^\s/:]{1,15}$/, 'a network interface name (at most 15 characters)');

/** An absolute, normalised path without spaces (SafeKit on Linux refuses spaces in replicated paths). */
export const absolutePath: ValueType<string> = {
  parse: (t, attr) => {
    if (!t.startsWith('/')) return bad(`attribute "${attr}" must be an absolute path, got "${t}"`);
    if (/\s/.test(t)) return bad(`attribute "${attr}" must not contain spaces, got "${t}"`);
    const parts = t.split('/').filter((p) => p !== '');
    if (parts.some((p) => p === '.' || p === '..')) {
      return bad(`attribute "${attr}" must not contain "." or ".." components, got "${t}"`);
    }
    return ok(`/${parts.join('/')}`);
  },
  format: (v) => v,
};

/** A path relative to a replicated directory: no leading '/', no '..', no spaces. */
export const relativePath: ValueType<string> = {
  parse: (t, attr) => {
    if (t.startsWith('/')) return bad(`attribute "${attr}" must be relative to the replicated directory, got "${t}"`);
    if (/\s/.test(t)) return bad(`attribute "${attr}" must not contain spaces, got "${t}"`);
    const parts = t.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) return bad(`attribute "${attr}" must not contain ".." components, got "${t}"`);
    if (parts.length === 0) return bad(`attribute "${attr}" must name an entry, got "${t}"`);
    return ok(parts.join('/'));
  },
  format: (v) => v,
};

/**
 * A POSIX extended regular expression. We check it compiles as a JavaScript RegExp, which accepts every
 * ERE we have met in practice; POSIX bracket classes such as [[:digit:]] are translated first, because JS
 * would read them as an odd character set. `negatable` allows the leading "!" of <notreplicated
 * regexpath> ("replicate only what matches").
 */
export function extendedRegex(options: { negatable?: boolean } = {}): ValueType<string> {
  return {
    parse: (t, attr) => {
      const body = options.negatable && t.startsWith('!') ? t.slice(1) : t;
      if (body === '') return bad(`attribute "${attr}" must not be an empty regular expression`);
      try {
        compileExtendedRegex(body);
        return ok(t);
      } catch (e) {
        const why = (e as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, '');
        return bad(`attribute "${attr}" is not a valid regular expression: ${why}`);
      }
    },
    format: (v) => v,
  };
}

const posixClasses: Record<string, string> = {
  alnum: 'A-Za-z0-9',
  alpha: 'A-Za-z',
  blank: ' \\t',
  cntrl: '\\x00-\\x1f\\x7f',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: ' \\t\\n\\r\\f\\v',
  upper: 'A-Z',
  xdigit: '0-9A-Fa-f',
};

/** Compiles a POSIX ERE as a JavaScript RegExp (an approximation; see extendedRegex). */
export function compileExtendedRegex(ere: string): RegExp {
  const translated = ere.replace(/\[:([a-z]+):\]/g, (whole, name: string) => posixClasses[name] ?? whole);
  return new RegExp(translated);
}

/** A separated list of items, each checked by `item`. Printed with `joiner`. */
export function list<T>(separator: RegExp, joiner: string, item: ValueType<T>): ValueType<T[]> {
  return {
    parse: (t, attr) => {
      const values: T[] = [];
      for (const part of t.split(separator).map((p) => p.trim())) {
        if (part === '') continue;
        const r = item.parse(part, attr);
        if (!r.ok) return r;
        values.push(r.value);
      }
      return values.length > 0 ? ok(values) : bad(`attribute "${attr}" must list at least one item, got "${t}"`);
    },
    format: (v) => v.map((x) => item.format(x)).join(joiner),
  };
}

/** A five-field crontab time specification ("minute hour day-of-month month day-of-week"). */
export const cronSpec: ValueType<string> = {
  parse: (t, attr) => {
    const fields = t.trim().split(/\s+/);
    const field = /^(?:\*|\d+(?:-\d+)?)(?:\/\d+)?(?:,(?:\*|\d+(?:-\d+)?)(?:\/\d+)?)*$|^[A-Za-z]{3}(?:-[A-Za-z]{3})?$/;
    if (fields.length !== 5 || !fields.every((f) => field.test(f))) {
      return bad(`attribute "${attr}" must be a crontab time such as "0 3 * * *" (5 fields), got "${t}"`);
    }
    return ok(fields.join(' '));
  },
  format: (v) => v,
};
