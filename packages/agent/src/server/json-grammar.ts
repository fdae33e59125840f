/**
 * Structured output (`response_format` `json_object` / `json_schema`): the schema is compiled to a character-level
 * JSON automaton, and at each decoding step every token whose text cannot continue a valid document is masked out
 * (a trie over the vocabulary's token texts is walked with the automaton), as llama.cpp's grammars and vLLM's
 * guided decoding do. EOS is allowed only once the document is complete. Lengths are bounded (strings, digits,
 * arrays, generic objects, whitespace runs) so generation always has a way to finish.
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
  | { k: 'anyobj' }
  | { k: 'arr'; item: Node; min: number; max: number }
  | { k: 'str'; min: number; max: number }
  | { k: 'lits'; values: string[] }
  | { k: 'num'; integer: boolean }
  | { k: 'any' }
  | { k: 'alt'; options: Node[] };

const LIMITS = { string: 64, digits: 12, items: 8, keys: 6, ws: 4, depth: 3 };
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
export function compileSchema(schema: unknown, where = 'schema'): Node {
  if (schema === true || (schema && typeof schema === 'object' && Object.keys(schema).length === 0)) return { k: 'any' };
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
      return alt(list.map((x, i) => compileSchema(x, `${where}.${k}.${i}`)), where);
    }
  }
  const type = s['type'];
  if (Array.isArray(type)) return alt(type.map((t) => compileSchema({ ...s, type: t }, where)), where);
  switch (type) {
    case undefined:
      if ('properties' in s) return compileSchema({ ...s, type: 'object' }, where);
      return { k: 'any' };
    case 'null':
      return { k: 'lits', values: ['null'] };
    case 'boolean':
      return { k: 'lits', values: ['true', 'false'] };
    case 'integer':
    case 'number':
      return { k: 'num', integer: type === 'integer' };
    case 'string': {
      const min = typeof s['minLength'] === 'number' ? s['minLength'] : 0;
      const max = Math.min(typeof s['maxLength'] === 'number' ? s['maxLength'] : LIMITS.string, LIMITS.string);
      if (min > max) throw new SchemaError(`${where}: minLength ${min} exceeds maxLength ${max}${max === LIMITS.string ? ' (the server caps strings at 64 characters)' : ''}`);
      return { k: 'str', min, max };
    }
    case 'array': {
      const min = typeof s['minItems'] === 'number' ? s['minItems'] : 0;
      const max = Math.min(typeof s['maxItems'] === 'number' ? s['maxItems'] : LIMITS.items, Math.max(LIMITS.items, min));
      if (min > max) throw new SchemaError(`${where}: minItems ${min} exceeds maxItems ${max}`);
      return { k: 'arr', item: compileSchema(s['items'] ?? {}, `${where}.items`), min, max };
    }
    case 'object': {
      const props = (s['properties'] ?? {}) as Record<string, unknown>;
      const required = Array.isArray(s['required']) ? (s['required'] as string[]) : [];
      for (const r of required) if (!(r in props)) throw new SchemaError(`${where}: required property "${r}" has no schema in "properties"${s['additionalProperties'] === false ? ' and additionalProperties is false, so no document satisfies it' : ''}`);
      if (Object.keys(props).length === 0 && s['additionalProperties'] !== false) return { k: 'anyobj' };
      return { k: 'obj', props: Object.entries(props).map(([key, v]) => ({ key, node: compileSchema(v, `${where}.properties.${key}`), required: required.includes(key) })) };
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
  | { t: 'num'; integer: boolean; phase: 'sign' | 'zero' | 'int' | 'dot' | 'frac' | 'e' | 'esign' | 'exp'; digits: number }
  | { t: 'obj'; node: Node & ({ k: 'obj' } | { k: 'anyobj' }); phase: 'open' | 'key' | 'colon' | 'after' | 'comma'; i: number; count: number; ws: number; depth: number; key?: string[]; keyPos?: number }
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
  if (f.t === 'obj') return push({ ...f, phase: 'after', ws: 0 }, up.up);
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
      if (ch === '-') return push({ t: 'num', integer: node.integer, phase: 'sign', digits: 0 }, up);
      if (ch === '0') return push({ t: 'num', integer: node.integer, phase: 'zero', digits: 1 }, up);
      return DIGITS.includes(ch) ? push({ t: 'num', integer: node.integer, phase: 'int', digits: 1 }, up) : null;
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
      const deep = depth >= LIMITS.depth;
      const generic: Node = ch === '"' ? { k: 'str', min: 0, max: LIMITS.string } : ch === '{' && !deep ? { k: 'anyobj' } : ch === '[' && !deep ? { k: 'arr', item: { k: 'any' }, min: 0, max: LIMITS.items } : '-0123456789'.includes(ch) ? { k: 'num', integer: false } : { k: 'lits', values: ['true', 'false', 'null'] };
      return startValue(generic, ch, up, depth);
    }
  }
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

/** Feeds one character; null when the document cannot continue with it. */
export function feed(s: GrammarState, ch: string): GrammarState | null {
  const f = s.f;
  switch (f.t) {
    case 'end':
      return null;
    case 'value':
      if (WS.includes(ch)) return f.ws < LIMITS.ws ? push({ ...f, ws: f.ws + 1 }, s.up) : null;
      return startValue(f.node, ch, s.up, f.depth);
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
      const more = f.digits < LIMITS.digits;
      const go = (phase: typeof f.phase, d = 0): GrammarState => push({ ...f, phase, digits: f.digits + d }, s.up);
      switch (f.phase) {
        case 'sign':
          if (ch === '0') return go('zero', 1);
          if (digit) return go('int', 1);
          return null;
        case 'zero':
        case 'int':
          if (digit && f.phase === 'int' && more) return go('int', 1);
          // A fraction or exponent needs a digit after it, so only while the digit budget lasts.
          if (!f.integer && more && ch === '.') return go('dot');
          if (!f.integer && more && (ch === 'e' || ch === 'E')) return go('e');
          break;
        case 'dot':
          return digit && more ? go('frac', 1) : null;
        case 'frac':
          if (digit && more) return go('frac', 1);
          if (more && (ch === 'e' || ch === 'E')) return go('e');
          break;
        case 'e':
          if (ch === '+' || ch === '-') return go('esign');
          return digit && more ? go('exp', 1) : null;
        case 'esign':
          return digit && more ? go('exp', 1) : null;
        case 'exp':
          if (digit && more) return go('exp', 1);
          break;
      }
      if (!implicitEnd(f)) return null;
      const r = ret(s.up);
      return r ? feed(r, ch) : null;
    }
    case 'arr': {
      if (WS.includes(ch) && f.phase !== undefined) return f.ws < LIMITS.ws ? push({ ...f, ws: f.ws + 1 }, s.up) : null;
      if (ch === ']' && f.count >= f.node.min && (f.phase === 'after' || (f.phase === 'open' && f.node.min === 0))) return ret(s.up);
      if (f.phase === 'after') return ch === ',' && f.count < f.node.max ? push({ ...f, phase: 'comma', ws: 0 }, s.up) : null;
      // 'open' or 'comma': an item starts.
      if (f.count >= f.node.max) return null;
      return startValue(f.node.item, ch, push({ ...f, ws: 0 }, s.up), f.depth + 1);
    }
    case 'obj': {
      if (f.phase === 'key') {
        const key = f.key!;
        const pos = f.keyPos!;
        if (f.node.k === 'anyobj') {
          // A generic key: a short string of plain characters.
          if (ch === '"') return pos > 1 ? push({ ...f, phase: 'colon', ws: 0, count: f.count + 1 }, s.up) : null;
          return pos <= 24 && /[A-Za-z0-9_ -]/.test(ch) ? push({ ...f, keyPos: pos + 1 }, s.up) : null;
        }
        const cands = key.filter((k) => k[pos] === ch);
        if (cands.length === 0) return null;
        const done = cands.find((k) => k.length === pos + 1);
        if (done) {
          const j = f.node.props.findIndex((p, idx) => idx >= f.i && JSON.stringify(p.key) === done);
          return push({ ...f, phase: 'colon', i: j + 1, ws: 0, count: f.count + 1 }, s.up);
        }
        return push({ ...f, key: cands, keyPos: pos + 1 }, s.up);
      }
      if (WS.includes(ch)) return f.ws < LIMITS.ws ? push({ ...f, ws: f.ws + 1 }, s.up) : null;
      if (f.phase === 'colon') {
        if (ch !== ':') return null;
        const node = f.node.k === 'anyobj' ? ({ k: 'any' } as Node) : f.node.props[f.i - 1]!.node;
        return push({ t: 'value', node, depth: f.depth + 1, ws: 0 }, push({ ...f, phase: 'after', ws: 0 }, s.up));
      }
      if (ch === '}' && (f.phase === 'open' || f.phase === 'after') && canClose(f)) return ret(s.up);
      if (f.phase === 'after') {
        if (ch !== ',') return null;
        const more = f.node.k === 'anyobj' ? f.count < LIMITS.keys : objectKeys(f).length > 0;
        return more ? push({ ...f, phase: 'comma', ws: 0 }, s.up) : null;
      }
      // 'open' or 'comma': a key starts.
      if (ch !== '"') return null;
      if (f.node.k === 'anyobj') return f.count < LIMITS.keys ? push({ ...f, phase: 'key', key: [], keyPos: 1 }, s.up) : null;
      const keys = objectKeys(f);
      return keys.length ? push({ ...f, phase: 'key', key: keys, keyPos: 1 }, s.up) : null;
    }
  }
}

/** Whether the document may end here. */
export function complete(s: GrammarState): boolean {
  if (s.f.t === 'end') return true;
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
