/**
 * Issue 16 item 3: every input observed to hang, crash, exhaust memory or end in "unexpected error"
 * (the attack run's list) is now one typed error naming the file and the field.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  CheckpointError,
  ConfigError,
  HfCheckpoint,
  INDEX_FILE,
  LlamaProError,
  Llama2cError,
  MAX_JSON_DEPTH,
  OutputError,
  SafetensorsError,
  asOutputError,
  SafetensorsFile,
  buildDirAtomic,
  copyAuxFiles,
  normalizeConfig,
  readLlama2cLayout,
  writeFileAtomic,
} from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { craftSafetensors, tmpDir } from './helpers';

let dir: string;
let base: string;
let sharded: string;
beforeAll(async () => {
  dir = await tmpDir('lp-inputs-');
  base = path.join(dir, 'base');
  await writeRandomCheckpoint(base, tinyRawConfig({ layers: 2 }), { seed: 3 });
  sharded = path.join(dir, 'sharded');
  await writeRandomCheckpoint(sharded, tinyRawConfig({ layers: 2 }), { seed: 3, maxShardBytes: 12_000 });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function variant(from: string, name: string, mutate: (d: string) => Promise<void>): Promise<string> {
  const d = path.join(dir, name);
  await fsp.cp(from, d, { recursive: true });
  await mutate(d);
  return d;
}

async function failure(p: Promise<unknown>): Promise<LlamaProError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(LlamaProError);
  return e as LlamaProError;
}

const mkfifo = (p: string) => execFileSync('mkfifo', [p]);

/** A legacy (version 0) llama2.c file with the given header fields and `floats` float32 values after it. */
async function legacyBin(file: string, fields: number[], floats: number): Promise<string> {
  const head = Buffer.alloc(28);
  fields.forEach((v, i) => head.writeInt32LE(v, 4 * i));
  await fsp.writeFile(file, Buffer.concat([head, Buffer.alloc(floats * 4)]));
  return file;
}

describe('config sizes are bounded before anything is built from them', () => {
  it('num_hidden_layers: 2147483647 in a ~600-byte config is a typed error naming the field', async () => {
    // The attack's input: a valid small checkpoint whose config claims 2^31-1 layers (ran > 240 s, 3.5 GB).
    const d = await variant(base, 'layers-max', async (d) => {
      await fsp.writeFile(path.join(d, 'config.json'), JSON.stringify({ ...tinyRawConfig({ layers: 2 }), num_hidden_layers: 2147483647 }));
    });
    expect((await fsp.stat(path.join(d, 'config.json'))).size).toBeLessThan(700);
    const e = await failure(HfCheckpoint.open(d));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe('CONFIG_OUT_OF_RANGE');
    expect(e.message).toMatch(/"num_hidden_layers" = 2147483647 is beyond any supported model/);
  });

  it('a million layers, and a layer count within bounds but far beyond the weights', async () => {
    expect(() => normalizeConfig({ ...tinyRawConfig(), num_hidden_layers: 1_000_000 })).toThrow(/"num_hidden_layers" = 1000000 is beyond/);
    const d = await variant(base, 'layers-4000', async (d) => {
      await fsp.writeFile(path.join(d, 'config.json'), JSON.stringify({ ...tinyRawConfig({ layers: 2 }), num_hidden_layers: 4000 }));
    });
    const e = await failure(HfCheckpoint.open(d));
    expect(e.code).toBe('CONFIG_WEIGHTS_MISMATCH');
    expect(e.message).toMatch(/config\.json says "num_hidden_layers" = 4000 \(36003 tensors\), but the weight files hold only 21 tensors/);
  });

  it.each([
    ['hidden_size', 1 << 30],
    ['intermediate_size', 1 << 30],
    ['vocab_size', 2 ** 31 - 1],
    ['num_attention_heads', 1 << 20],
  ])('%s = %d is refused by normalizeConfig', (key, v) => {
    const raw = { ...tinyRawConfig(), [key]: v, ...(key === 'num_attention_heads' ? { num_key_value_heads: v, head_dim: 8 } : {}) };
    expect(() => normalizeConfig(raw)).toThrow(new RegExp(`"${key}" = ${v} is beyond any supported model`));
  });

  it('sizes each within bounds whose product is not a model are refused', () => {
    expect(() => normalizeConfig({ ...tinyRawConfig(), hidden_size: 1 << 18, intermediate_size: 1 << 20, num_hidden_layers: 4096, num_attention_heads: 64, num_key_value_heads: 64 })).toThrow(
      /implies .* parameters, more than the .* supported/,
    );
  });

  it('hidden sizes far beyond the weights are refused before the shape check', async () => {
    const d = await variant(base, 'hidden-big', async (d) => {
      await fsp.writeFile(path.join(d, 'config.json'), JSON.stringify({ ...tinyRawConfig({ layers: 2 }), hidden_size: 65536, intermediate_size: 65536, num_attention_heads: 512 }));
    });
    const e = await failure(HfCheckpoint.open(d));
    expect(e.code).toBe('CONFIG_WEIGHTS_MISMATCH');
    expect(e.message).toMatch(/implies \d+ parameters \(hidden_size 65536/);
  });
});

describe('only regular files are opened', () => {
  it('a FIFO as config.json, model.safetensors or the index is refused without blocking', async () => {
    const c = await variant(base, 'fifo-config', async (d) => {
      await fsp.rm(path.join(d, 'config.json'));
      mkfifo(path.join(d, 'config.json'));
    });
    expect((await failure(HfCheckpoint.open(c))).message).toBe(`${path.join(c, 'config.json')} is a FIFO (named pipe), not a regular file; only regular files are read`);
    const w = await variant(base, 'fifo-weights', async (d) => {
      await fsp.rm(path.join(d, 'model.safetensors'));
      mkfifo(path.join(d, 'model.safetensors'));
    });
    const e = await failure(HfCheckpoint.open(w));
    expect(e).toBeInstanceOf(SafetensorsError);
    expect(e.message).toMatch(/model\.safetensors: is a FIFO \(named pipe\), not a regular file/);
    const i = await variant(sharded, 'fifo-index', async (d) => {
      await fsp.rm(path.join(d, INDEX_FILE));
      mkfifo(path.join(d, INDEX_FILE));
    });
    expect((await failure(HfCheckpoint.open(i))).code).toBe('INPUT_NOT_REGULAR');
  });

  it('a FIFO as the llama2.c .bin, or as a tokenizer file to copy, is refused', async () => {
    const fifo = path.join(dir, 'model.bin');
    mkfifo(fifo);
    const e = await failure(readLlama2cLayout(fifo));
    expect(e).toBeInstanceOf(Llama2cError);
    expect(e.message).toBe(`${fifo}: is a FIFO (named pipe), not a regular file; only regular files are read`);
    const src = await variant(base, 'fifo-aux', async (d) => mkfifo(path.join(d, 'tokenizer.json')));
    const to = path.join(dir, 'aux-out');
    await fsp.mkdir(to);
    expect((await failure(copyAuxFiles(src, to))).message).toMatch(/tokenizer\.json is a FIFO/);
  });

  it('config.json -> /dev/zero is refused at once (was 17 s and 643 MB)', async () => {
    const d = await variant(base, 'devzero', async (d) => {
      await fsp.rm(path.join(d, 'config.json'));
      await fsp.symlink('/dev/zero', path.join(d, 'config.json'));
    });
    expect((await failure(HfCheckpoint.open(d))).message).toMatch(/config\.json is a character device, not a regular file/);
  });

  it('a config.json over the size cap is refused without reading it', async () => {
    const d = await variant(base, 'huge-config', async (d) => {
      const fh = await fsp.open(path.join(d, 'config.json'), 'r+');
      await fh.truncate(1 << 30); // sparse: 1 GiB that occupies no disk
      await fh.close();
    });
    const e = await failure(HfCheckpoint.open(d));
    expect(e.code).toBe('INPUT_TOO_LARGE');
    expect(e.message).toMatch(/config\.json is 1073741824 bytes, more than the \d+-byte limit/);
  });
});

describe('JSON depth is bounded', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

  it('a deeply nested unknown key in config.json is a typed error, not a stack overflow', async () => {
    const d = await variant(base, 'deep-config', async (d) => {
      const text = JSON.stringify(tinyRawConfig({ layers: 2 })).replace(/}$/, `,"unknown_key":${deep(200_000)}}`);
      await fsp.writeFile(path.join(d, 'config.json'), text);
    });
    const e = await failure(HfCheckpoint.open(d));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe('INPUT_JSON_DEPTH');
    expect(e.message).toMatch(new RegExp(`config\\.json nests JSON deeper than ${MAX_JSON_DEPTH} levels`));
  });

  it('nesting up to the limit is accepted; strings holding brackets do not count', async () => {
    const d = await variant(base, 'nested-ok', async (d) => {
      const text = JSON.stringify({ ...tinyRawConfig({ layers: 2 }), note: '[[[[{{{{' }).replace(/}$/, `,"k":${deep(MAX_JSON_DEPTH - 1)}}`);
      await fsp.writeFile(path.join(d, 'config.json'), text);
    });
    const ck = await HfCheckpoint.open(d);
    await ck.close();
  });

  it('a deeply nested safetensors header is a typed error', async () => {
    const f = await craftSafetensors(path.join(dir, 'deep.safetensors'), `{"__metadata__":${deep(100_000)}}`, new Uint8Array(0));
    const e = await failure(SafetensorsFile.open(f));
    expect(e.message).toMatch(/header JSON nests deeper than 128 levels/);
  });
});

describe('index and header contents', () => {
  it.each([
    ['', /= "" is empty/],
    ['.', /= "\." is "\.", a directory/],
    ['..', /= "\.\." is "\.\.", a directory/],
    ['sub/model.safetensors', /must be a plain file name in the model directory/],
  ])('weight_map value %j is a typed error (was "unexpected error: EISDIR")', async (value, msg) => {
    const d = await variant(sharded, `wm-${Buffer.from(value).toString('hex') || 'empty'}`, async (d) => {
      const p = path.join(d, INDEX_FILE);
      const idx = JSON.parse(await fsp.readFile(p, 'utf8'));
      idx.weight_map['model.norm.weight'] = value;
      await fsp.writeFile(p, JSON.stringify(idx));
    });
    const e = await failure(HfCheckpoint.open(d));
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.code).toBe('CHECKPOINT_INDEX');
    expect(e.message).toMatch(/weight_map\["model\.norm\.weight"\]/);
    expect(e.message).toMatch(msg);
  });

  it('a safetensors header beginning with a UTF-8 BOM is refused (the reference reader refuses it too)', async () => {
    const f = path.join(dir, 'bom.safetensors');
    const header = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"__metadata__":{"format":"pt"}}')]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    await fsp.writeFile(f, Buffer.concat([len, header]));
    const e = await failure(SafetensorsFile.open(f));
    expect(e.code).toBe('SAFETENSORS_HEADER');
    expect(e.message).toMatch(/header starts with a UTF-8 byte-order mark/);
  });

  it('a config.json beginning with a BOM is a typed error naming the file', async () => {
    const d = await variant(base, 'bom-config', async (d) => {
      const p = path.join(d, 'config.json');
      await fsp.writeFile(p, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), await fsp.readFile(p)]));
    });
    expect((await failure(HfCheckpoint.open(d))).message).toMatch(/config\.json starts with a UTF-8 byte-order mark/);
  });
});

describe('llama2.c headers', () => {
  it('a layer count beyond any model is refused before the layout is computed', async () => {
    const f = await legacyBin(path.join(dir, 'layers.bin'), [64, 172, 2147483647, 8, 4, 512, 512], 16);
    expect((await failure(readLlama2cLayout(f))).message).toMatch(/header field n_layers = 2147483647 is not a plausible size \(1\.\.4096\)/);
  });

  it('a plausible header that needs more bytes than the file has is a typed truncation error', async () => {
    const f = await legacyBin(path.join(dir, 'short.bin'), [64, 172, 4096, 8, 4, 512, 512], 16);
    expect((await failure(readLlama2cLayout(f))).message).toMatch(/file is 92 bytes but the header .* needs \d+; it is truncated/);
  });
});

describe('paths that are not model directories', () => {
  it('a llama2.c file given as a model directory says to run convert first (issue 18 item 4)', async () => {
    const f = await legacyBin(path.join(dir, 'stories.bin'), [8, 16, 1, 2, 2, 4, 4], 1);
    const e = await failure(HfCheckpoint.open(f));
    expect(e.message).toBe(`${f} is a llama2.c checkpoint file, not a Hugging Face model directory; convert it first: llama-pro convert ${f} <out-dir>`);
    const other = path.join(dir, 'notes.txt');
    await fsp.writeFile(other, 'hello');
    expect((await failure(HfCheckpoint.open(other))).message).toBe(`${other} is a file, not a Hugging Face model directory (a directory holding config.json and model.safetensors)`);
  });

  it("another process's temporary output is refused even when it looks complete", async () => {
    const tmp = path.join(dir, '.grown.tmp-99999999-0badf00d');
    await fsp.cp(base, tmp, { recursive: true });
    const e = await failure(HfCheckpoint.open(tmp));
    expect(e.code).toBe('CHECKPOINT_TEMPORARY');
    expect(e.message).toMatch(/is an unfinished temporary output of llama-pro \(being written by process 99999999 for .*grown\), not a model/);
  });
});

describe('write errors name the output', () => {
  it('ENOSPC while building a directory names the output path', async () => {
    // /dev/full answers every write with ENOSPC, as a full disk does.
    const target = path.join(dir, 'full-out');
    const e = await failure(buildDirAtomic(target, async () => fsp.writeFile('/dev/full', 'x')));
    expect(e).toBeInstanceOf(OutputError);
    expect(e.message).toBe(`cannot write ${target}: no space left on device (ENOSPC); free space or choose another output path`);
    expect((await fsp.readdir(dir)).filter((f) => f.startsWith('.full-out'))).toEqual([]);
  });

  it('an errno error of the native copy addon (a code, no syscall) names the output too', () => {
    // @llama-pro/native-io rejects with an Error whose `code` is the errno name (native/copy_range.c).
    const e = asOutputError(Object.assign(new Error('copy_file_range failed'), { code: 'ENOSPC' }), '/out/model');
    expect(e).toBeInstanceOf(OutputError);
    expect((e as Error).message).toBe('cannot write /out/model: no space left on device (ENOSPC); free space or choose another output path');
    const typed = new OutputError('already typed');
    expect(asOutputError(typed, '/out/model')).toBe(typed);
  });

  it('an errno failure in an atomic file write names the file', async () => {
    const target = path.join(dir, 'nowhere', 'x.json');
    const e = await failure(writeFileAtomic(target, 'x'));
    expect(e.message).toMatch(/^cannot write .*nowhere\/x\.json: /);
  });
});
