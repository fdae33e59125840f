/**
 * Child process of fuzz-inputs.test.ts: `node -r ts-register.js fuzz-child.ts <seeds-dir> <work-dir> <first> <count>`.
 * Case i (seeded by i) copies one seed input, mutates it, and runs the real CLI (`main`, in process) on
 * it: `inspect`, then `convert` (llama2.c) or `expand` (HF directories). Each case prints one JSON line
 * on stdout: `{"start": i}` before it runs and `{"i", "family", "what", "outcome", "code", "line", "rss"}`
 * after (outcome "ok" for exit 0, "typed" for one `llama-pro: ...` line, else "untyped"). A last line
 * `{"done": n, "maxRssKiB"}` ends the run. The parent is the watchdog (a case that hangs is killed).
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp, writeSync } from 'node:fs';
import * as path from 'node:path';
import { Rng } from '@llama-pro/core';
import { main } from '../../src/main';

const [seedsDir, workDir, firstArg, countArg] = process.argv.slice(2) as [string, string, string, string];
const FIRST = Number(firstArg);
const COUNT = Number(countArg);
// Written straight to fd 1: `cli()` swaps process.stdout.write while a command runs.
const out = (o: unknown) => writeSync(1, JSON.stringify(o) + '\n');

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]!;
const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

/** Extreme and wrong-typed values a field may be set to. */
const VALUES: readonly unknown[] = [
  2147483647, -2147483648, 4294967295, 2 ** 53, 1e300, -1, 0, 1, 2, 3, 7, 4096, 4097, 65536, 1 << 20, 1.5, -0.5, 1e-300,
  '', 'x', '2', 'NaN', null, true, false, [], {}, [1, 2], { a: 1 }, 'silu', 'float16', 'int3', 'Ȁ',
];
const CONFIG_KEYS = [
  'architectures', 'model_type', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads',
  'head_dim', 'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'rope_scaling', 'hidden_act', 'tie_word_embeddings',
  'attention_bias', 'mlp_bias', 'torch_dtype', 'bos_token_id', 'eos_token_id', 'pad_token_id', 'num_local_experts', 'num_experts_per_tok',
  'layer_types', 'max_window_layers', 'use_sliding_window', 'unknown_key',
];
const SHARD_NAMES = ['', '.', '..', '/etc/passwd', 'a/b.safetensors', 'missing.safetensors', 'config.json', 'model.safetensors.index.json', 'x'.repeat(300), 'a\u0000b', '\\\\x'];

/** Replaces `file` by something that is not a regular file (or an empty/huge one). */
async function replaceSpecial(rng: Rng, file: string): Promise<string> {
  await fsp.rm(file, { recursive: true, force: true });
  const kind = pick(rng, ['fifo', 'devzero', 'devnull', 'dir', 'empty', 'sparse', 'loop', 'dangling'] as const);
  if (kind === 'fifo') execFileSync('mkfifo', [file]);
  else if (kind === 'devzero') await fsp.symlink('/dev/zero', file);
  else if (kind === 'devnull') await fsp.symlink('/dev/null', file);
  else if (kind === 'dir') await fsp.mkdir(file);
  else if (kind === 'empty') await fsp.writeFile(file, '');
  else if (kind === 'sparse') {
    const fh = await fsp.open(file, 'w');
    await fh.truncate(1 << 30);
    await fh.close();
  } else if (kind === 'loop') await fsp.symlink(path.basename(file), file);
  else await fsp.symlink('/nonexistent/target', file);
  return kind;
}

function flipBytes(rng: Rng, buf: Buffer, lo: number, hi: number, n: number): void {
  for (let k = 0; k < n && hi > lo; k++) buf[lo + rng.int(hi - lo)] = rng.int(256);
}

/** Mutates a safetensors file: bytes of the length/header, header fields, truncation, BOM, junk. */
async function mutateSafetensors(rng: Rng, file: string): Promise<string> {
  const buf = await fsp.readFile(file);
  const n = Number(buf.readBigUInt64LE(0));
  const op = pick(rng, ['flip-header', 'length', 'truncate', 'extend', 'bom', 'field', 'field', 'field', 'deep', 'special'] as const);
  if (op === 'special') return `special:${await replaceSpecial(rng, file)}`;
  let outBuf = buf;
  if (op === 'flip-header') flipBytes(rng, buf, 0, Math.min(buf.length, 8 + n + 16), 1 + rng.int(8));
  else if (op === 'length') buf.writeBigUInt64LE(pick(rng, [0n, 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(n - 1), BigInt(n + 1), 100_000_001n, BigInt(buf.length)]), 0);
  else if (op === 'truncate') outBuf = buf.subarray(0, rng.int(buf.length));
  else if (op === 'extend') outBuf = Buffer.concat([buf, Buffer.alloc(1 + rng.int(64), rng.int(256))]);
  else {
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, Record<string, unknown>>;
    let text: string;
    if (op === 'bom') text = '\ufeff' + JSON.stringify(header);
    else if (op === 'deep') text = JSON.stringify(header).replace(/}$/, `,"z":${deep(1000 + rng.int(100_000))}}`);
    else {
      const names = Object.keys(header).filter((k) => k !== '__metadata__');
      const t = header[pick(rng, names)]!;
      const f = pick(rng, ['dtype', 'shape', 'data_offsets', 'delete', 'rename'] as const);
      if (f === 'delete') delete header[names[0]!];
      else if (f === 'rename') header[`model.layers.${pick(rng, [0, 1, 99, 2147483647])}.mlp.up_proj.weight`] = t;
      else if (f === 'dtype') t['dtype'] = pick(rng, ['F32', 'F16', 'BF16', 'I8', 'F64', 'Q4', '', 7, null]);
      else if (f === 'shape') t['shape'] = pick(rng, [[], [0], [-1], [2147483647, 2147483647], [1e300], ['1'], [3, 3, 3, 3, 3, 3, 3, 3], null, [2 ** 53]]);
      else t['data_offsets'] = pick(rng, [[0, 0], [0], [-1, 4], [4, 0], [0, 2 ** 53], [1, 1e300], null, [0, Number(n)]]);
      text = JSON.stringify(header);
    }
    const h = Buffer.from(text, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    outBuf = Buffer.concat([len, h, buf.subarray(8 + n)]);
  }
  await fsp.writeFile(file, outBuf);
  return op;
}

async function mutateConfig(rng: Rng, file: string): Promise<string> {
  const op = pick(rng, ['value', 'value', 'value', 'value', 'two-values', 'delete', 'bytes', 'deep', 'bom', 'not-object', 'special'] as const);
  if (op === 'special') return `special:${await replaceSpecial(rng, file)}`;
  const raw = JSON.parse(await fsp.readFile(file, 'utf8')) as Record<string, unknown>;
  let text: string;
  let what: string = op;
  if (op === 'value' || op === 'two-values') {
    for (let k = 0; k < (op === 'value' ? 1 : 2); k++) {
      const key = pick(rng, CONFIG_KEYS);
      const v = pick(rng, VALUES);
      raw[key] = v;
      what += ` ${key}=${JSON.stringify(v)}`;
    }
    text = JSON.stringify(raw);
  } else if (op === 'delete') {
    const key = pick(rng, CONFIG_KEYS);
    delete raw[key];
    what += ` ${key}`;
    text = JSON.stringify(raw);
  } else if (op === 'bytes') {
    const b = Buffer.from(JSON.stringify(raw));
    flipBytes(rng, b, 0, b.length, 1 + rng.int(4));
    text = b.toString('latin1');
  } else if (op === 'deep') text = JSON.stringify(raw).replace(/}$/, `,"unknown_key":${deep(1000 + rng.int(200_000))}}`);
  else if (op === 'bom') text = '\ufeff' + JSON.stringify(raw);
  else text = pick(rng, ['[]', '1', '"x"', 'null', '', '{']);
  await fsp.writeFile(file, text, 'latin1');
  return what;
}

async function mutateIndex(rng: Rng, dir: string): Promise<string> {
  const file = path.join(dir, 'model.safetensors.index.json');
  const shards = (await fsp.readdir(dir)).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort();
  const op = pick(rng, ['value', 'value', 'value', 'key', 'drop', 'not-object', 'deep', 'special-index', 'special-shard', 'shard-bytes'] as const);
  if (op === 'special-index') return `special-index:${await replaceSpecial(rng, file)}`;
  if (op === 'special-shard') return `special-shard:${await replaceSpecial(rng, path.join(dir, pick(rng, shards)))}`;
  if (op === 'shard-bytes') return `shard:${await mutateSafetensors(rng, path.join(dir, pick(rng, shards)))}`;
  const idx = JSON.parse(await fsp.readFile(file, 'utf8')) as { weight_map: Record<string, unknown> };
  const keys = Object.keys(idx.weight_map);
  let what: string = op;
  if (op === 'value') {
    const k = pick(rng, keys);
    const v = rng.int(3) === 0 ? pick(rng, VALUES) : pick(rng, [...SHARD_NAMES, ...shards]);
    idx.weight_map[k] = v;
    what += ` ${JSON.stringify(v)}`;
  } else if (op === 'key') {
    const k = pick(rng, keys);
    idx.weight_map[pick(rng, ['', '__proto__', 'model.layers.2147483647.mlp.up_proj.weight', 'x'])] = idx.weight_map[k];
    delete idx.weight_map[k];
  } else if (op === 'drop') delete idx.weight_map[pick(rng, keys)];
  let text = JSON.stringify(idx);
  if (op === 'not-object') text = pick(rng, ['{"weight_map": []}', '{"weight_map": null}', '[]', '{"weight_map": "x"}']);
  if (op === 'deep') text = text.replace(/}$/, `,"metadata":${deep(1000 + rng.int(200_000))}}`);
  await fsp.writeFile(file, text);
  return what;
}

/** Mutates a llama2.c file: header fields, bytes, truncation, extension, magic/version. */
async function mutateLlama2c(rng: Rng, file: string): Promise<string> {
  const buf = await fsp.readFile(file);
  const versioned = buf.readUInt32LE(0) === 0x616b3432;
  const op = pick(rng, ['field', 'field', 'field', 'two-fields', 'flip', 'truncate', 'extend', 'version', 'special'] as const);
  if (op === 'special') return `special:${await replaceSpecial(rng, file)}`;
  let outBuf = buf;
  let what: string = op;
  const fieldAt = (i: number) => (versioned ? 8 : 0) + 4 * i;
  if (op === 'field' || op === 'two-fields') {
    for (let k = 0; k < (op === 'field' ? 1 : 2); k++) {
      const i = rng.int(7);
      const v = pick(rng, [2147483647, -2147483648, -1, 0, 1, 2, 3, 4096, 4097, 1 << 24, 65536, 16, 32, -32]);
      buf.writeInt32LE(v, fieldAt(i));
      what += ` f${i}=${v}`;
    }
  } else if (op === 'flip') flipBytes(rng, buf, 0, Math.min(buf.length, 300), 1 + rng.int(6));
  else if (op === 'truncate') outBuf = buf.subarray(0, rng.int(buf.length));
  else if (op === 'extend') outBuf = Buffer.concat([buf, Buffer.alloc(4 * (1 + rng.int(16)))]);
  else {
    if (!versioned) outBuf = Buffer.concat([Buffer.from([0x32, 0x34, 0x6b, 0x61]), buf]);
    else buf.writeInt32LE(pick(rng, [0, 2, 3, -1, 2147483647]), 4);
  }
  await fsp.writeFile(file, outBuf);
  return what;
}

/** Runs the CLI in process with stdout/stderr captured; returns the exit code and what it printed. */
async function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => {
    stderr += c.toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(['node', 'llama-pro', ...args]);
    return { code, stderr };
  } catch (e) {
    return { code: -1, stderr: `THREW: ${(e as Error)?.stack ?? String(e)}` };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

function classify(r: { code: number; stderr: string }): { outcome: 'ok' | 'typed' | 'untyped'; line: string } {
  // Off a TTY, progress is JSON lines on stderr; the error is the one human line.
  const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('{"event"'));
  if (r.code === 0) return { outcome: 'ok', line: '' };
  const line = lines.join(' | ');
  const typed = r.code > 0 && lines.length === 1 && lines[0]!.startsWith('llama-pro: ') && !/unexpected error|Maximum call stack|THREW/.test(line);
  return { outcome: typed ? 'typed' : 'untyped', line: line.slice(0, 400) };
}

async function runCase(i: number): Promise<void> {
  const rng = new Rng(0x5eed0000 + i);
  const family = (['safetensors', 'config', 'index', 'llama2c-v0', 'llama2c-v1'] as const)[i % 5]!;
  const caseDir = path.join(workDir, `case-${i}`);
  await fsp.rm(caseDir, { recursive: true, force: true });
  await fsp.mkdir(caseDir);
  let what: string;
  let target: string;
  try {
    if (family === 'llama2c-v0' || family === 'llama2c-v1') {
      target = path.join(caseDir, 'model.bin');
      await fsp.copyFile(path.join(seedsDir, family === 'llama2c-v0' ? 'v0.bin' : 'v1.bin'), target);
      what = await mutateLlama2c(rng, target);
    } else {
      target = path.join(caseDir, 'model');
      await fsp.cp(path.join(seedsDir, family === 'index' ? 'sharded' : 'single'), target, { recursive: true });
      if (family === 'safetensors') what = await mutateSafetensors(rng, path.join(target, 'model.safetensors'));
      else if (family === 'config') what = await mutateConfig(rng, path.join(target, 'config.json'));
      else what = await mutateIndex(rng, target);
    }
    const inspect = classify(await cli(['inspect', target, '--json']));
    const second =
      family.startsWith('llama2c')
        ? classify(await cli(['convert', target, path.join(caseDir, 'out')]))
        : classify(await cli(['expand', target, path.join(caseDir, 'out'), '--strategy', 'top', '--blocks', '1', '--no-base-hash']));
    const worst = [inspect, second].find((r) => r.outcome === 'untyped') ?? [inspect, second].find((r) => r.outcome === 'typed') ?? inspect;
    out({ i, family, what, outcome: worst.outcome, line: worst.line, rss: Math.round(process.memoryUsage().rss / 1024) });
  } finally {
    await fsp.rm(caseDir, { recursive: true, force: true });
  }
}

async function run(): Promise<void> {
  for (let i = FIRST; i < FIRST + COUNT; i++) {
    out({ start: i });
    await runCase(i);
  }
  out({ done: COUNT, maxRssKiB: process.resourceUsage().maxRSS });
}

run().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`fuzz child failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
