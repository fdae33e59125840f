/**
 * Structured output (`response_format` `json_object` / `json_schema`): the schema is compiled to a character-level
 * JSON automaton, and at each decoding step every token whose text cannot continue a valid document is masked out
 * (a trie over the vocabulary's token texts is walked with the automaton), as llama.cpp's grammars and vLLM's
 * guided decoding do. EOS is allowed only once the document is complete.
 *
 * Lengths: what a schema bounds (maxLength, maxItems, minLength, minItems, enum, const) is honoured exactly, and what
 * it leaves open (a string without maxLength, an array without maxItems, a number's digits, the nesting) is not
 * capped, as in llama.cpp's and vLLM's grammars: generation is bounded by max_tokens, and a document cut there comes
 * back with finish_reason "length" (OpenAI: the JSON may then be incomplete). Schema-less values (json_object,
 * `{}` / `true` sub-schemas) are unbounded too unless the server is started with {@link GenericJsonLimits} (option
 * `jsonLimits`: strings, items, properties, depth), an explicit operator choice that shapes them like a schema's
 * maxLength / maxItems would. Those bounds never apply where a schema speaks, so they cannot make a schema
 * unsatisfiable or cut a value the schema allows. Whitespace between tokens comes in runs of at most {@link JSON_WHITESPACE_RUN} characters
 * (formatting only: every JSON value stays expressible), as llama.cpp's json.gbnf limits it.
 *
 * Tool calls (`tool_choice` "required" / a named function): {@link toolCallNode} builds the grammar of
 * `<tool_call>{"name": "<name>", "arguments": <arguments>}</tool_call>` (one, or several separated by newlines), the
 * arguments following that function's parameters schema, so the reply is always well-formed calls.
 *
 * Supported schema keywords: type (one or a list), properties, required, additionalProperties (extra properties are
 * never generated), items, minItems, maxItems, enum, const, minLength, maxLength, anyOf / oneOf whose options start
 * with different characters, and the annotations title, description, default, examples, $schema. Anything else is
 * refused (SchemaError), and so is a schema no document can satisfy.
 */
import type { TextTokenizer } from '@llama-pro/core';
import { decodeAfter } from '@llama-pro/core';

export class SchemaError extends Error {}

type Node =
  | { k: 'obj'; props: { key: string; node: Node; required: boolean }[] }
  | { k: 'anyobj'; lim: GenericJsonLimits }
  | { k: 'arr'; item: Node; min: number; max: number }
  | { k: 'str'; min: number; max: number }
  | { k: 'lits'; values: string[] }
  | { k: 'num'; integer: boolean }
  | { k: 'any'; lim: GenericJsonLimits }
  | { k: 'alt'; options: Node[] }
  | { k: 'tagged'; cases: { prefix: string; node: Node; suffix: string }[] }
  | { k: 'calls'; call: Node & { k: 'tagged' }; sep: string };

/**
 * Bounds for schema-less JSON only (json_object, `{}` / `true` sub-schemas): most characters of a string (keys
 * included), items of an array, properties of an object, and `depth`: at that nesting depth of the document or deeper
 * (the top-level value is depth 0) a schema-less value is a string, number, boolean or null, not an object or array.
 * Values a schema describes are never capped by these. Server option `jsonLimits`; every bound is Infinity (none)
 * unless set.
 */
export interface GenericJsonLimits {
  string: number;
  items: number;
  properties: number;
  depth: number;
}
export const GENERIC_JSON_LIMITS: Readonly<GenericJsonLimits> = { string: Infinity, items: Infinity, properties: Infinity, depth: Infinity };

/** The limits with an override applied; a bad value is a typed error naming the field (integers ≥ 1 or Infinity). */
export function genericJsonLimits(over: Partial<GenericJsonLimits> = {}): GenericJsonLimits {
  const lim = { ...GENERIC_JSON_LIMITS, ...over };
  for (const [k, v] of Object.entries(lim)) {
    if (!(v === Infinity || (Number.isInteger(v) && v >= 1))) throw new SchemaError(`JSON grammar limit "${k}" must be an integer ≥ 1 or Infinity, got ${String(v)}`);
  }
  return lim;
}

/** Longest run of whitespace the grammar lets the model put between tokens (formatting, not a bound on values). */
export const JSON_WHITESPACE_RUN = 4;
const WS_RUN = JSON_WHITESPACE_RUN;
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', 'strict']);
const KEYWORDS = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'minItems', 'maxItems', 'enum', 'const', 'minLength', 'maxLength', 'anyOf', 'oneOf']);

function firstChars(n: Node): string {
  switch (n.k) {
    case 'obj':
    case 'anyobj':
      return '{';
    case 'arr':
      return '[';
    case 'str':
      return '"';
    case 'num':
      return '-0123456789';
    case 'lits':
      return [...new Set(n.values.map((v) => v[0]!))].join('');
    case 'any':
      return '{["-0123456789tfn';
    case 'alt':
      return n.options.map(firstChars).join('');
    case 'tagged':
      return [...new Set(n.cases.map((c) => c.prefix[0]!))].join('');
    case 'calls':
      return firstChars(n.call);
  }
}

function alt(options: Node[], where: string): Node {
  if (options.length === 0) throw new SchemaError(`${where}: no value can satisfy this schema`);
  if (options.length === 1) return options[0]!;
  const seen = new Set<string>();
  for (const o of options) {
    for (const c of firstChars(o)) {
      if (seen.has(c)) throw new SchemaError(`${where}: alternatives that can start with the same character ("${c}") are not supported`);
      seen.add(c);
    }
  }
  return { k: 'alt', options };
}

/** Compiles a JSON schema (or `null` for json_object: any JSON object) into the automaton's nodes. */
export function compileSchema(schema: unknown, where = 'schema', lim: GenericJsonLimits = GENERIC_JSON_LIMITS): Node {
  if (schema === true || (schema && typeof schema === 'object' && Object.keys(schema).length === 0)) return { k: 'any', lim };
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) throw new SchemaError(`${where} must be a JSON schema object`);
  const s = schema as Record<string, unknown>;
  for (const key of Object.keys(s)) if (!KEYWORDS.has(key) && !ANNOTATIONS.has(key)) throw new SchemaError(`${where}: keyword "${key}" is not supported (supported: ${[...KEYWORDS].join(', ')})`);
  if ('const' in s || 'enum' in s) {
    const values = 'const' in s ? [s['const']] : s['enum'];
    if (!Array.isArray(values)) throw new SchemaError(`${where}.enum must be an array`);
    const types = s['type'] === undefined ? null : ([] as unknown[]).concat(s['type']);
    const ok = values.filter((v) => v === null || ['string', 'number', 'boolean'].includes(typeof v)).filter((v) => !types || types.includes(v === null ? 'null' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v) || (types.includes('number') && typeof v === 'number'));
    if (ok.length === 0) throw new SchemaError(`${where}: no value of the enum/const satisfies the schema`);
    return { k: 'lits', values: [...new Set(ok.map((v) => JSON.stringify(v)))] };
  }
  for (const k of ['anyOf', 'oneOf']) {
    if (k in s) {
      const list = s[k];
      if (!Array.isArray(list)) throw new SchemaError(`${where}.${k} must be an array`);
      return alt(list.map((x, i) => compileSchema(x, `${where}.${k}.${i}`, lim)), where);
    }
  }
  const type = s['type'];
  if (Array.isArray(type)) return alt(type.map((t) => compileSchema({ ...s, type: t }, where, lim)), where);
  switch (type) {
    case undefined:
      if ('properties' in s) return compileSchema({ ...s, type: 'object' }, where, lim);
      return { k: 'any', lim };
    case 'null':
      return { k: 'lits', values: ['null'] };
    case 'boolean':
      return { k: 'lits', values: ['true', 'false'] };
    case 'integer':
    case 'number':
      return { k: 'num', integer: type === 'integer' };
    case 'string': {
      const min = typeof s['minLength'] === 'number' ? s['minLength'] : 0;
      const max = typeof s['maxLength'] === 'number' ? s['maxLength'] : Infinity;
      if (min > max) throw new SchemaError(`${where}: minLength ${min} exceeds maxLength ${max}`);
      return { k: 'str', min, max };
    }
    case 'array': {
      const min = typeof s['minItems'] === 'number' ? s['minItems'] : 0;
      const max = typeof s['maxItems'] === 'number' ? s['maxItems'] : Infinity;
      if (min > max) throw new SchemaError(`${where}: minItems ${min} exceeds maxItems ${max}`);
      return { k: 'arr', item: compileSchema(s['items'] ?? {}, `${where}.items`, lim), min, max };
    }
    case 'object': {
      const props = (s['properties'] ?? {}) as Record<string, unknown>;
      const required = Array.isArray(s['required']) ? (s['required'] as string[]) : [];
      for (const r of required) if (!(r in props)) throw new SchemaError(`${where}: required property "${r}" has no schema in "properties"${s['additionalProperties'] === false ? ' and additionalProperties is false, so no document satisfies it' : ''}`);
      if (Object.keys(props).length === 0 && s['additionalProperties'] !== false) return { k: 'anyobj', lim };
      return { k: 'obj', props: Object.entries(props).map(([key, v]) => ({ key, node: compileSchema(v, `${where}.properties.${key}`, lim), required: required.includes(key) })) };
    }
    default:
      throw new SchemaError(`${where}: type ${JSON.stringify(type)} is not a JSON schema type`);
  }
}

// ---- the automaton: immutable states (a frame and the stack above it), fed one character at a time ----

type Frame =
  | { t: 'value'; node: Node; depth: number; ws: number }
  | { t: 'lit'; cands: string[]; pos: number }
  | { t: 'str'; node: { min: number; max: number }; len: number; esc: number }
  | { t: 'num'; integer: boolean; phase: 'sign' | 'zero' | 'int' | 'dot' | 'frac' | 'e' | 'esign' | 'exp' }
  | { t: 'obj'; node: Node & ({ k: 'obj' } | { k: 'anyobj' }); phase: 'open' | 'key' | 'anykey' | 'colon' | 'after' | 'comma'; i: number; count: number; ws: number; depth: number; key?: string[]; keyPos?: number }
  | { t: 'tag'; cases: (Node & { k: 'tagged' })['cases']; pos: number; depth: number }
  | { t: 'more'; node: Node & { k: 'calls' } }
  | { t: 'arr'; node: Node & { k: 'arr' }; phase: 'open' | 'after' | 'comma'; count: number; ws: number; depth: number }
  | { t: 'end' };

export interface GrammarState {
  readonly f: Frame;
  readonly up: GrammarState | null;
}

const WS = ' \n';
const DIGITS = '0123456789';

function push(f: Frame, up: GrammarState | null): GrammarState {
  return { f, up };
}

/** The parent after the value on top of it completed. */
function ret(up: GrammarState | null): GrammarState | null {
  if (!up) return null;
  const f = up.f;
  // A schema-less key (a string) was read: the colon comes next.
  if (f.t === 'obj' && f.phase === 'anykey') return push({ ...f, phase: 'colon', ws: 0, count: f.count + 1 }, up.up);
  if (f.t === 'obj') return push({ ...f, phase: 'after', ws: 0 }, up.up);
  // The value before a literal suffix (a tool call's closing) completed: the suffix follows. A separator before
  // another tool call completed: the call follows. A tool call completed: another may follow.
  if (f.t === 'lit' || f.t === 'value' || f.t === 'more') return up;
  if (f.t === 'arr') return push({ ...f, phase: 'after', count: f.count + 1, ws: 0 }, up.up);
  if (f.t === 'end') return up;
  return null;
}

function startValue(node: Node, ch: string, up: GrammarState | null, depth: number): GrammarState | null {
  switch (node.k) {
    case 'lits': {
      const cands = node.values.filter((v) => v[0] === ch);
      return cands.length ? push({ t: 'lit', cands, pos: 1 }, up) : null;
    }
    case 'str':
      return ch === '"' ? push({ t: 'str', node, len: 0, esc: 0 }, up) : null;
    case 'num':
      if (ch === '-') return push({ t: 'num', integer: node.integer, phase: 'sign' }, up);
      if (ch === '0') return push({ t: 'num', integer: node.integer, phase: 'zero' }, up);
      return DIGITS.includes(ch) ? push({ t: 'num', integer: node.integer, phase: 'int' }, up) : null;
    case 'obj':
    case 'anyobj':
      return ch === '{' ? push({ t: 'obj', node, phase: 'open', i: 0, count: 0, ws: 0, depth }, up) : null;
    case 'arr':
      return ch === '[' ? push({ t: 'arr', node, phase: 'open', count: 0, ws: 0, depth }, up) : null;
    case 'alt':
      for (const o of node.options) {
        const s = startValue(o, ch, up, depth);
        if (s) return s;
      }
      return null;
    case 'any': {
      const lim = node.lim;
      const deep = depth >= lim.depth;
      const generic: Node = ch === '"' ? { k: 'str', min: 0, max: lim.string } : ch === '{' && !deep ? { k: 'anyobj', lim } : ch === '[' && !deep ? { k: 'arr', item: node, min: 0, max: lim.items } : '-0123456789'.includes(ch) ? { k: 'num', integer: false } : { k: 'lits', values: ['true', 'false', 'null'] };
      // Depth counts from the schema-less value down (its nested values carry depth + 1).
      return startValue(generic, ch, up, depth);
    }
    case 'tagged':
      return tagStep(node.cases, 0, ch, up, depth);
    case 'calls':
      return startValue(node.call, ch, push({ t: 'more', node }, up), depth);
  }
}

/** One character of a tagged value's prefix; once a prefix is complete, its value follows, then its suffix. */
function tagStep(cases: (Node & { k: 'tagged' })['cases'], pos: number, ch: string, up: GrammarState | null, depth: number): GrammarState | null {
  const cands = cases.filter((c) => c.prefix[pos] === ch);
  if (cands.length === 0) return null;
  // Prefixes are prefix-free (toolCallNode quotes the names), so at most one is complete here.
  const done = cands.find((c) => c.prefix.length === pos + 1);
  if (done) return push({ t: 'value', node: done.node, depth, ws: 0 }, done.suffix ? push({ t: 'lit', cands: [done.suffix], pos: 0 }, up) : up);
  return push({ t: 'tag', cases: cands, pos: pos + 1, depth }, up);
}

/** Whether the frame on top is a complete value if no more of it comes (numbers, literals). */
function implicitEnd(f: Frame): boolean {
  if (f.t === 'num') return f.phase === 'zero' || f.phase === 'int' || f.phase === 'frac' || f.phase === 'exp';
  if (f.t === 'lit') return f.cands.some((c) => c.length === f.pos);
  return false;
}

function objectKeys(f: Frame & { t: 'obj' }): string[] {
  if (f.node.k === 'anyobj') return [];
  const out: string[] = [];
  for (let j = f.i; j < f.node.props.length; j++) {
    out.push(JSON.stringify(f.node.props[j]!.key));
    if (f.node.props[j]!.required) break;
  }
  return out;
}

function canClose(f: Frame & { t: 'obj' }): boolean {
  return f.node.k === 'anyobj' || f.node.props.slice(f.i).every((p) => !p.required);
}

/**
 * The grammar of tool calls in the json-tool-calls format the chat templates describe:
 * `<open>{"name": "<name>", "arguments": <arguments>}<close>`, one case per function, the arguments compiled from its
 * parameters schema (none: any JSON object); with `many`, one or more such calls separated by a newline (the way
 * toolCallsAsText writes several), else exactly one.
 */
export function toolCallNode(functions: readonly { name: string; parameters?: unknown }[], open: string, close: string, lim: GenericJsonLimits = GENERIC_JSON_LIMITS, many = false): Node {
  if (functions.length === 0) throw new SchemaError('tool_choice: no function to call');
  const call: Node & { k: 'tagged' } = {
    k: 'tagged',
    cases: functions.map((f, i) => ({
      prefix: `${open}{"name": ${JSON.stringify(f.name)}, "arguments": `,
      node: compileSchema(f.parameters ?? { type: 'object' }, `tools.${i}.function.parameters`, lim),
      suffix: `}${close}`,
    })),
  };
  return many ? { k: 'calls', call, sep: '\n' } : call;
}

/** Feeds one character; null when the document cannot continue with it. */
export function feed(s: GrammarState, ch: string): GrammarState | null {
  const f = s.f;
  switch (f.t) {
    case 'end':
      return null;
    case 'value':
      // A tool call starts right at its opening tag; JSON values may have whitespace before them.
      if (WS.includes(ch)) return f.ws < WS_RUN && f.node.k !== 'tagged' && f.node.k !== 'calls' ? push({ ...f, ws: f.ws + 1 }, s.up) : null;
      return startValue(f.node, ch, s.up, f.depth);
    case 'tag':
      return tagStep(f.cases, f.pos, ch, s.up, f.depth);
    case 'more': {
      // After a call: the separator, then another call (which returns here), or the end of the reply.
      if (ch !== f.node.sep[0]) return null;
      return push({ t: 'lit', cands: [f.node.sep], pos: 1 }, push({ t: 'value', node: f.node.call, depth: 0, ws: 0 }, s));
    }
    case 'lit': {
      const cands = f.cands.filter((c) => c[f.pos] === ch);
      if (cands.length) return push({ ...f, cands, pos: f.pos + 1 }, s.up);
      if (implicitEnd(f)) {
        const r = ret(s.up);
        return r ? feed(r, ch) : null;
      }
      return null;
    }
    case 'str': {
      if (f.esc > 0) {
        if (f.esc === 1) {
          if (ch === 'u') return push({ ...f, esc: 2 }, s.up);
          return '"\\/bfnrt'.includes(ch) ? push({ ...f, esc: 0, len: f.len + 1 }, s.up) : null;
        }
        if (!/[0-9a-fA-F]/.test(ch)) return null;
        return push({ ...f, esc: f.esc === 5 ? 0 : f.esc + 1, len: f.esc === 5 ? f.len + 1 : f.len }, s.up);
      }
      if (ch === '"') return f.len >= f.node.min ? ret(s.up) : null;
      if (f.len >= f.node.max) return null;
      if (ch === '\\') return push({ ...f, esc: 1 }, s.up);
      if (ch.charCodeAt(0) < 0x20 || ch === '\uFFFD') return null;
      return push({ ...f, len: f.len + 1 }, s.up);
    }
    case 'num': {
      const digit = DIGITS.includes(ch);
      const go = (phase: typeof f.phase): GrammarState => (phase === f.phase ? s : push({ ...f, phase }, s.up));
      switch (f.phase) {
        case 'sign':
          if (ch === '0') return go('zero');
          if (digit) return go('int');
          return null;
        case 'zero':
        case 'int':
          if (digit && f.phase === 'int') return go('int');
          if (!f.integer && ch === '.') return go('dot');
          if (!f.integer && (ch === 'e' || ch === 'E')) return go('e');
          break;
        case 'dot':
          return digit ? go('frac') : null;
        case 'frac':
          if (digit) return go('frac');
          if (ch === 'e' || ch === 'E') return go('e');
          break;
        case 'e':
          if (ch === '+' || ch === '-') return go('esign');
          return digit ? go('exp') : null;
        case 'esign':
          return digit ? go('exp') : null;
        case 'exp':
          if (digit) return go('exp');
          break;
      }
      if (!implicitEnd(f)) return null;
      const r = ret(s.up);
      return r ? feed(r, ch) : null;
    }
    case 'arr': {
      if (WS.includes(ch)) return f.ws < WS_RUN ? push({ ...f, ws: f.ws + 1 }, s.up) : null;
      if (ch === ']' && f.count >= f.node.min && (f.phase === 'after' || (f.phase === 'open' && f.node.min === 0))) return ret(s.up);
      if (f.phase === 'after') return ch === ',' && f.count < f.node.max ? push({ ...f, phase: 'comma', ws: 0 }, s.up) : null;
      // 'open' or 'comma': an item starts.
      if (f.count >= f.node.max) return null;
      return startValue(f.node.item, ch, push({ ...f, ws: 0 }, s.up), f.depth + 1);
    }
    case 'obj': {
      if (f.phase === 'key' && f.node.k === 'obj') {
        const props = f.node.props;
        const key = f.key!;
        const pos = f.keyPos!;
        const cands = key.filter((k) => k[pos] === ch);
        if (cands.length === 0) return null;
        const done = cands.find((k) => k.length === pos + 1);
        if (done) {
          const j = props.findIndex((p, idx) => idx >= f.i && JSON.stringify(p.key) === done);
          return push({ ...f, phase: 'colon', i: j + 1, ws: 0, count: f.count + 1 }, s.up);
        }
        return push({ ...f, key: cands, keyPos: pos + 1 }, s.up);
      }
      if (WS.includes(ch)) return f.ws < WS_RUN ? push({ ...f, ws: f.ws + 1 }, s.up) : null;
      if (f.phase === 'colon') {
        if (ch !== ':') return null;
        const node: Node = f.node.k === 'anyobj' ? { k: 'any', lim: f.node.lim } : f.node.props[f.i - 1]!.node;
        return push({ t: 'value', node, depth: f.depth + 1, ws: 0 }, push({ ...f, phase: 'after', ws: 0 }, s.up));
      }
      if (ch === '}' && (f.phase === 'open' || f.phase === 'after') && canClose(f)) return ret(s.up);
      if (f.phase === 'after') {
        if (ch !== ',') return null;
        const more = f.node.k === 'anyobj' ? f.count < f.node.lim.properties : objectKeys(f).length > 0;
        return more ? push({ ...f, phase: 'comma', ws: 0 }, s.up) : null;
      }
      // 'open' or 'comma': a key starts.
      if (ch !== '"') return null;
      // A schema-less key: any JSON string (read by a string frame; ret() then expects the colon).
      if (f.node.k === 'anyobj') return f.count < f.node.lim.properties ? push({ t: 'str', node: { min: 0, max: f.node.lim.string }, len: 0, esc: 0 }, push({ ...f, phase: 'anykey' }, s.up)) : null;
      const keys = objectKeys(f);
      return keys.length ? push({ ...f, phase: 'key', key: keys, keyPos: 1 }, s.up) : null;
    }
  }
}

/** Whether the document may end here. */
export function complete(s: GrammarState): boolean {
  if (s.f.t === 'end') return true;
  if (s.f.t === 'more') return s.up !== null && complete(s.up);
  if (implicitEnd(s.f)) {
    const r = ret(s.up);
    return r !== null && complete(r);
  }
  return false;
}

export function initialState(node: Node): GrammarState {
  return push({ t: 'value', node, depth: 0, ws: 0 }, push({ t: 'end' }, null));
}

export function feedText(s: GrammarState | null, text: string): GrammarState | null {
  for (const ch of text) {
    if (!s) return null;
    s = feed(s, ch);
  }
  return s;
}

// ---- the vocabulary as a trie of token texts ----

interface Trie {
  children: Map<string, Trie>;
  ids: number[];
}

/** Token texts in context (decoded after a plain token, so SentencePiece pieces keep their leading space). */
export class VocabTrie {
  readonly root: Trie = { children: new Map(), ids: [] };
  readonly texts: string[];

  constructor(tokenizer: TextTokenizer, vocabSize: number) {
    const anchor = tokenizer.encode('a');
    this.texts = new Array<string>(vocabSize).fill('');
    for (let id = 0; id < vocabSize; id++) {
      let text: string;
      try {
        text = decodeAfter(tokenizer, anchor, [id], { skipSpecialTokens: true });
      } catch {
        continue;
      }
      this.texts[id] = text;
      if (text.length === 0 || text.includes('\uFFFD')) continue;
      let node = this.root;
      for (const ch of text) {
        let next = node.children.get(ch);
        if (!next) node.children.set(ch, (next = { children: new Map(), ids: [] }));
        node = next;
      }
      node.ids.push(id);
    }
  }

  /** Token ids whose whole text the automaton accepts from `s`. */
  allowed(s: GrammarState): number[] {
    const out: number[] = [];
    const walk = (node: Trie, st: GrammarState): void => {
      for (const [ch, child] of node.children) {
        const next = feed(st, ch);
        if (!next) continue;
        out.push(...child.ids);
        walk(child, next);
      }
    };
    walk(this.root, s);
    return out;
  }
}

/**
 * A logits mask for one generation: tokens that cannot continue the document get -Infinity; EOS ids only once it is
 * complete. `state` follows the generated tokens.
 */
export function grammarMask(trie: VocabTrie, node: Node, endIds: readonly number[]): (logits: Float32Array, generated: readonly number[]) => void {
  let state: GrammarState | null = initialState(node);
  let seen = 0;
  return (logits, generated) => {
    for (; seen < generated.length; seen++) state = feedText(state, trie.texts[generated[seen]!]!);
    const keep = new Uint8Array(logits.length);
    if (state) {
      for (const id of trie.allowed(state)) keep[id] = 1;
      if (complete(state)) for (const id of endIds) keep[id] = 1;
    }
    for (let i = 0; i < logits.length; i++) if (!keep[i]) logits[i] = -Infinity;
  };
}
