// The failover rule language of <failover> (SafeKit §13.19):
//
//   rules      := rule*
//   rule       := label ":" "if" "(" expr ")" "then" action ";"
//   expr       := and ("||" and)*
//   and        := unary ("&&" unary)*
//   unary      := "!" unary | "(" expr ")" | comparison
//   comparison := operand ("==" | "!=") operand
//   operand    := resource | value | function "(" ")"
//   resource   := ["local." | "remote."] class "." id        id: a name, "*" (every) or "?" (any)
//   value      := init | up | down | unknown | on | off
//   action     := ("stop" | "stopstart" | "wait" | "restart" | "swap") "(" ")"  |  resource "=" value
//
// The parser reports every error with its exact file position (the caller maps text indexes through
// the CDATA section and macro expansion) and recovers at the next ";", so one run finds all mistakes.
// The AST carries no positions, so configurations compare equal whatever their layout.
import { closest } from '../did-you-mean.ts';

export type ResourceValue = 'init' | 'up' | 'down' | 'unknown' | 'on' | 'off';
export type RuleActionName = 'stop' | 'stopstart' | 'wait' | 'restart' | 'swap';

export interface ResourceRef {
  kind: 'resource';
  /** Absent: the local node's resource. "remote" is the peer's (mirror only). */
  scope?: 'local' | 'remote';
  class: string;
  /** A resource id, "*" (the condition holds for every resource of the class) or "?" (for any one). */
  id: string;
}

export type RuleOperand = ResourceRef | { kind: 'value'; value: ResourceValue } | { kind: 'call'; name: string };

export type RuleExpr =
  | { kind: 'and' | 'or'; left: RuleExpr; right: RuleExpr }
  | { kind: 'not'; operand: RuleExpr }
  | { kind: 'compare'; op: '==' | '!='; left: RuleOperand; right: RuleOperand };

export type RuleAction =
  | { kind: 'call'; name: RuleActionName }
  | { kind: 'set'; target: ResourceRef; value: ResourceValue };

export interface FailoverRule {
  label: string;
  condition: RuleExpr;
  action: RuleAction;
}

export const resourceValues: readonly ResourceValue[] = ['init', 'up', 'down', 'unknown', 'on', 'off'];
export const ruleActions: readonly RuleActionName[] = ['stop', 'stopstart', 'wait', 'restart', 'swap'];
export const ruleFunctions: readonly string[] = ['cluster'];
/** Resource classes produced by stayup's components (§3.5 of the reference). */
export const resourceClasses: readonly string[] = [
  'heartbeat',
  'rfs',
  'proc',
  'intf',
  'ip',
  'ping',
  'tcp',
  'custom',
  'module',
  'splitbrain',
  'connections',
  'state',
  'usersetting',
  'heart',
];

export interface RuleParseOptions {
  /** File position of the character at `index` of the text. */
  locate(index: number): { line: number; col: number };
  report(at: { line: number; col: number }, message: string): void;
  /** The module mode: remote resources and swap() only make sense in a mirror. */
  mode?: string;
}

type TokenKind = 'word' | 'punct' | 'end';
interface Token {
  kind: TokenKind;
  text: string;
  index: number;
}

const wordStart = /[A-Za-z0-9_*?]/;
const wordChar = /[A-Za-z0-9_*?.-]/;
const punctuation = ['&&', '||', '==', '!=', '!', '=', '(', ')', ':', ';'];

/** Thrown inside the parser to unwind to the rule loop, which resynchronises at the next ";". */
class RuleSyntaxError extends Error {}

export function parseFailoverRules(text: string, options: RuleParseOptions): FailoverRule[] {
  const lua = /^\s*--/.exec(text);
  if (lua) {
    options.report(
      options.locate(lua[0].length - 2),
      '<failover>: Lua rules are not supported; write rules as `label: if (condition) then action();`',
    );
    return [];
  }
  return new RuleParser(text, options).rules();
}

class RuleParser {
  readonly #tokens: Token[] = [];
  #pos = 0;
  readonly #labels = new Map<string, number>();

  constructor(
    text: string,
    readonly options: RuleParseOptions,
  ) {
    this.#tokens = this.tokenize(text);
  }

  private tokenize(text: string): Token[] {
    const tokens: Token[] = [];
    let i = 0;
    while (i < text.length) {
      const c = text[i]!;
      if (/\s/.test(c)) {
        i++;
        continue;
      }
      if (wordStart.test(c)) {
        const start = i;
        while (i < text.length && wordChar.test(text[i]!)) i++;
        tokens.push({ kind: 'word', text: text.slice(start, i), index: start });
        continue;
      }
      const p = punctuation.find((q) => text.startsWith(q, i));
      if (p) {
        tokens.push({ kind: 'punct', text: p, index: i });
        i += p.length;
        continue;
      }
      // An unknown character: report it and skip, so the rest of the rules are still checked.
      this.error({ kind: 'punct', text: c, index: i }, `unexpected character "${c}"`, false);
      i++;
    }
    tokens.push({ kind: 'end', text: '', index: text.length });
    return tokens;
  }

  rules(): FailoverRule[] {
    const rules: FailoverRule[] = [];
    while (this.peek().kind !== 'end') {
      const start = this.#pos;
      try {
        rules.push(this.rule());
      } catch (e) {
        if (!(e instanceof RuleSyntaxError)) throw e;
        // Skip to just after the next ";" (at least one token, so we always make progress).
        if (this.#pos === start) this.#pos++;
        while (this.peek().kind !== 'end' && this.#tokens[this.#pos - 1]?.text !== ';') this.#pos++;
      }
    }
    return rules;
  }

  private rule(): FailoverRule {
    const label = this.next();
    if (label.kind !== 'word' || !/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(label.text)) {
      this.error(label, `expected a rule label, got ${shown(label)}`);
    }
    const first = this.#labels.get(label.text);
    if (first !== undefined) {
      const at = this.options.locate(first);
      this.error(label, `rule "${label.text}" is defined twice (first at ${at.line}:${at.col})`, false);
    } else {
      this.#labels.set(label.text, label.index);
    }
    this.expect(':', `after the rule label "${label.text}"`);
    this.expectWord('if');
    this.expect('(', 'after "if"');
    const condition = this.or();
    this.expect(')', 'to close the condition');
    this.expectWord('then');
    const action = this.action();
    this.expect(';', 'after the action');
    return { label: label.text, condition, action };
  }

  private or(): RuleExpr {
    let left = this.and();
    while (this.peek().text === '||') {
      this.next();
      left = { kind: 'or', left, right: this.and() };
    }
    return left;
  }

  private and(): RuleExpr {
    let left = this.unary();
    while (this.peek().text === '&&') {
      this.next();
      left = { kind: 'and', left, right: this.unary() };
    }
    return left;
  }

  private unary(): RuleExpr {
    const t = this.peek();
    if (t.kind === 'punct' && t.text === '!') {
      this.next();
      return { kind: 'not', operand: this.unary() };
    }
    if (t.kind === 'punct' && t.text === '(') {
      this.next();
      const inner = this.or();
      this.expect(')', 'to close "("');
      return inner;
    }
    return this.comparison();
  }

  private comparison(): RuleExpr {
    const left = this.operand();
    const op = this.next();
    if (op.text !== '==' && op.text !== '!=') {
      this.error(op, `expected "==" or "!=" after ${describe(left)}, got ${shown(op)}`);
    }
    const right = this.operand();
    if (left.kind === 'value' && right.kind === 'value') {
      this.error(op, `comparison of two values ("${left.value}" and "${right.value}") is always the same`, false);
    }
    return { kind: 'compare', op: op.text as '==' | '!=', left, right };
  }

  private operand(): RuleOperand {
    const t = this.next();
    if (t.kind !== 'word') this.error(t, `expected a resource, a value or a function call, got ${shown(t)}`);
    if (this.peek().text === '(') {
      this.next();
      this.expect(')', `after "${t.text}("`);
      if (!ruleFunctions.includes(t.text)) {
        const guess = closest(t.text, ruleFunctions);
        this.error(t, `unknown function "${t.text}()"${guess ? `; did you mean "${guess}()"?` : ''}`, false);
      }
      return { kind: 'call', name: t.text };
    }
    if (!t.text.includes('.')) {
      if ((resourceValues as readonly string[]).includes(t.text)) return { kind: 'value', value: t.text as ResourceValue };
      const guess = closest(t.text, resourceValues);
      this.error(
        t,
        `"${t.text}" is neither a resource (class.id) nor a value (${resourceValues.join(', ')})` +
          (guess ? `; did you mean "${guess}"?` : ''),
      );
    }
    return this.resource(t);
  }

  private resource(t: Token): ResourceRef {
    const parts = t.text.split('.');
    const scope = parts[0] === 'local' || parts[0] === 'remote' ? (parts.shift() as 'local' | 'remote') : undefined;
    const [cls, ...idParts] = parts;
    const id = idParts.join('.');
    if (!cls || idParts.length === 0 || idParts.some((p) => p === '')) {
      this.error(t, `"${t.text}" is not a resource: write [local.|remote.]class.id`);
    }
    if (!resourceClasses.includes(cls!)) {
      const guess = closest(cls!, resourceClasses);
      this.error(t, `unknown resource class "${cls}" in "${t.text}"${guess ? `; did you mean "${guess}"?` : ''}`, false);
    }
    if (/[*?]/.test(id) && id !== '*' && id !== '?') {
      this.error(t, `in "${t.text}": a resource id is a name, "*" (every) or "?" (any)`, false);
    }
    if (scope === 'remote' && this.options.mode !== undefined && this.options.mode !== 'mirror') {
      this.error(t, `"${t.text}": remote resources exist only in a mirror module`, false);
    }
    return scope ? { kind: 'resource', scope, class: cls!, id } : { kind: 'resource', class: cls!, id };
  }

  private action(): RuleAction {
    const t = this.next();
    if (t.kind !== 'word') this.error(t, `expected an action, got ${shown(t)}`);
    if (this.peek().text === '(') {
      this.next();
      this.expect(')', `after "${t.text}("`);
      if (!(ruleActions as readonly string[]).includes(t.text)) {
        const guess = closest(t.text, ruleActions);
        const tail = guess ? `; did you mean "${guess}()"?` : ` (use ${ruleActions.map((a) => `${a}()`).join(', ')})`;
        this.error(t, `unknown action "${t.text}()"${tail}`, false);
      }
      if (t.text === 'swap' && this.options.mode !== undefined && this.options.mode !== 'mirror') {
        this.error(t, 'action "swap()" exists only in a mirror module', false);
      }
      return { kind: 'call', name: t.text as RuleActionName };
    }
    if (this.peek().text === '=') {
      const target = this.resource(t);
      this.next();
      if (target.id === '*' || target.id === '?') this.error(t, `cannot assign to "${t.text}": it names several resources`, false);
      if (target.scope === 'remote') this.error(t, `cannot assign to "${t.text}": it is the peer's resource`, false);
      const v = this.next();
      if (!(resourceValues as readonly string[]).includes(v.text)) {
        this.error(v, `expected a value (${resourceValues.join(', ')}), got ${shown(v)}`);
      }
      return { kind: 'set', target, value: v.text as ResourceValue };
    }
    const guess = closest(t.text, ruleActions);
    this.error(t, `expected an action such as "stopstart()", got ${shown(t)}${guess ? `; did you mean "${guess}()"?` : ''}`);
  }

  private peek(): Token {
    return this.#tokens[this.#pos]!;
  }

  private next(): Token {
    const t = this.#tokens[this.#pos]!;
    if (t.kind !== 'end') this.#pos++;
    return t;
  }

  private expect(punct: string, context: string): void {
    const t = this.next();
    if (t.kind !== 'punct' || t.text !== punct) this.error(t, `expected "${punct}" ${context}, got ${shown(t)}`);
  }

  private expectWord(word: string): void {
    const t = this.next();
    if (t.kind !== 'word' || t.text !== word) this.error(t, `expected "${word}", got ${shown(t)}`);
  }

  /** Reports at the token; `fatal` errors abandon the current rule (the default). */
  private error(t: Token, message: string, fatal?: true): never;
  private error(t: Token, message: string, fatal: false): void;
  private error(t: Token, message: string, fatal = true): void {
    this.options.report(this.options.locate(t.index), `<failover>: ${message}`);
    if (fatal) throw new RuleSyntaxError(message);
  }
}

function shown(t: Token): string {
  return t.kind === 'end' ? 'the end of the rules' : `"${t.text}"`;
}

function describe(o: RuleOperand): string {
  return o.kind === 'value' ? `"${o.value}"` : o.kind === 'call' ? `"${o.name}()"` : `"${formatResource(o)}"`;
}

export function formatResource(r: ResourceRef): string {
  return `${r.scope ? `${r.scope}.` : ''}${r.class}.${r.id}`;
}

function formatOperand(o: RuleOperand): string {
  return o.kind === 'value' ? o.value : o.kind === 'call' ? `${o.name}()` : formatResource(o);
}

const precedence = { or: 1, and: 2 } as const;

/** Canonical text of a condition. Parentheses appear exactly where the tree needs them. */
export function formatCondition(e: RuleExpr, minPrecedence = 0): string {
  switch (e.kind) {
    case 'compare':
      return `${formatOperand(e.left)} ${e.op} ${formatOperand(e.right)}`;
    case 'not':
      return e.operand.kind === 'not' ? `!${formatCondition(e.operand)}` : `!(${formatCondition(e.operand)})`;
    case 'and':
    case 'or': {
      const p = precedence[e.kind];
      // Left-associative: a right operand of the same operator needs parentheses to keep its shape.
      const s = `${formatCondition(e.left, p)} ${e.kind === 'and' ? '&&' : '||'} ${formatCondition(e.right, p + 1)}`;
      return p < minPrecedence ? `(${s})` : s;
    }
  }
}

export function formatAction(a: RuleAction): string {
  return a.kind === 'call' ? `${a.name}()` : `${formatResource(a.target)}=${a.value}`;
}

export function formatRule(r: FailoverRule): string {
  return `${r.label}: if (${formatCondition(r.condition)}) then ${formatAction(r.action)};`;
}

/** The rules one per line, each preceded by `indent`; undefined when there are none. */
export function formatFailoverRules(rules: FailoverRule[], indent: string): string | undefined {
  return rules.length === 0 ? undefined : rules.map((r) => indent + formatRule(r)).join('\n');
}
