/**
 * Hugging Face model directories: `config.json`, `model.safetensors` or sharded
 * `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`, and the tokenizer /
 * generation files, which are copied byte for byte.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, ConfigError } from '../errors';
import { type LlamaConfig, normalizeConfig } from '../config/llama-config';
import { expectedShape, expectedTensorNames } from '../config/tensor-names';
import { type DType, type FloatDType, decodeToFloat32, dtypeSize, isFloatDType } from './dtype';
import { type CopyStats, SafetensorsFile, SafetensorsWriter, type SafetensorsWriterOptions, type TensorInfo, type TensorSpec, numel } from './safetensors';
import { buildDirAtomic, temporaryOutputOf, writeJsonAtomic, type AtomicDirOptions } from './atomic';
import { MAX_CONFIG_JSON_BYTES, MAX_INDEX_JSON_BYTES, fileKind, fileMessage, openRegularFile, readJsonFile } from './input-files';
import { checkConfigAgainstTensors } from '../config/bounds';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** Files copied byte for byte from a source model directory when they exist. */
export const AUX_FILES = [
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'tokenizer.model',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'chat_template.json',
] as const;
/** Default maximum shard size (5 GB, as transformers). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/** Tensors some exporters leave in checkpoints that carry no model parameters. */
const NON_PARAMETER = /(^|\.)rotary_emb\.inv_freq$/;

/** False for buffers some exporters store (e.g. `rotary_emb.inv_freq`), true for model parameters. */
export function isParameterTensor(name: string): boolean {
  return !NON_PARAMETER.test(name);
}

export interface WeightSource {
  readonly config: LlamaConfig;
  tensorNames(): string[];
  info(name: string): TensorInfo;
  readFloat32(name: string): Promise<Float32Array>;
}

/** Parses sizes like "5GB", "500MB", "2GiB", "1048576". GB/MB/KB are powers of 10, GiB/MiB/KiB powers of 2. */
export function parseByteSize(s: string | number): number {
  if (typeof s === 'number') return s;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(s);
  if (!m) throw new ConfigError(`cannot parse size "${s}"; use e.g. 5GB, 500MB, 2GiB or a byte count`, 'USAGE');
  const n = Number(m[1]);
  const unit = (m[2] ?? 'b').toLowerCase();
  const pow = { b: 0, k: 1, m: 2, g: 3, t: 4 }[unit[0] as 'b' | 'k' | 'm' | 'g' | 't'];
  const base = unit.includes('i') ? 1024 : 1000;
  const v = Math.floor(n * base ** pow);
  if (!(v > 0)) throw new ConfigError(`size "${s}" must be positive`, 'USAGE');
  return v;
}

/** A typed error for a file of a model directory: content problems are ConfigError, access problems CheckpointError. */
function dirFileError(file: string, contentError: (m: string, code: string) => Error = (m, c) => new ConfigError(m, c)) {
  return (detail: string, code: string) => {
    const msg = fileMessage(file, detail);
    return code === 'INPUT_MISSING' || code === 'INPUT_NOT_REGULAR' || code === 'INPUT_UNREADABLE' ? new CheckpointError(msg, code) : (contentError(msg, code) as CheckpointError);
  };
}

/** Why `dir` is not a model directory (it exists but is a file or something else), as one line, or null. */
async function notADirectory(dir: string): Promise<string | null> {
  let st;
  try {
    st = await fsp.stat(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return `model directory ${dir} does not exist`;
    return `cannot read model directory ${dir} (${code ?? (e as Error).message})`;
  }
  if (st.isDirectory()) return null;
  if (!st.isFile()) return `${dir} is a ${fileKind(st)}, not a Hugging Face model directory`;
  // A file: say what to do with a llama2.c checkpoint instead of failing on <file>/config.json.
  const llama2c = /\.bin$/i.test(dir) || (await looksLikeLlama2c(dir));
  return llama2c
    ? `${dir} is a llama2.c checkpoint file, not a Hugging Face model directory; convert it first: llama-pro convert ${dir} <out-dir>`
    : `${dir} is a file, not a Hugging Face model directory (a directory holding config.json and model.safetensors)`;
}

async function looksLikeLlama2c(file: string): Promise<boolean> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { readLlama2cLayout } = require('../llama2c/import') as typeof import('../llama2c/import');
  return readLlama2cLayout(file).then(
    () => true,
    () => false,
  );
}

/** Reads `<dir>/config.json`: a regular file, size- and depth-capped; every failure is typed. */
export async function readConfigJson(dir: string): Promise<Record<string, unknown>> {
  const why = await notADirectory(dir);
  if (why) throw new CheckpointError(why, 'CHECKPOINT_MISSING');
  const temp = temporaryOutputOf(dir);
  // This process's own temporary (e.g. `expand --verify` reading its output before publishing it) is fine.
  if (temp && temp.pid !== process.pid) {
    throw new CheckpointError(
      `${dir} is an unfinished temporary output of llama-pro (${temp.kind === 'tmp' ? 'being written' : 'a previous output moved aside during --force'} by process ${temp.pid} for ${temp.target}), not a model; run the command again, which cleans it up`,
      'CHECKPOINT_TEMPORARY',
    );
  }
  const file = path.join(dir, 'config.json');
  let json: unknown;
  try {
    json = await readJsonFile(file, dirFileError(file), { maxBytes: MAX_CONFIG_JSON_BYTES });
  } catch (e) {
    if ((e as CheckpointError).code === 'INPUT_MISSING') throw new CheckpointError(`${dir} has no config.json; it is not a Hugging Face model directory`, 'CHECKPOINT_MISSING');
    throw e;
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(`${file} must hold a JSON object`);
  return json as Record<string, unknown>;
}

/** An opened HF checkpoint; tensors are read lazily by byte range. */
export class HfCheckpoint implements WeightSource {
  private constructor(
    readonly dir: string,
    readonly rawConfig: Record<string, unknown>,
    readonly config: LlamaConfig,
    readonly shards: readonly SafetensorsFile[],
    private readonly where: Map<string, SafetensorsFile>,
    readonly sharded: boolean,
  ) {}

  /** Opens `dir`, validating shards, the index and (unless `validate: false`) names and shapes against the config. */
  static async open(dir: string, options: { validate?: boolean } = {}): Promise<HfCheckpoint> {
    const rawConfig = await readConfigJson(dir);
    let config: LlamaConfig;
    try {
      config = normalizeConfig(rawConfig);
    } catch (e) {
      // Name the file: normalizeConfig knows only "config.json".
      if (!(e instanceof ConfigError)) throw e;
      const file = path.join(dir, 'config.json');
      throw new ConfigError(e.message.startsWith('config.json') ? file + e.message.slice('config.json'.length) : `${file}: ${e.message}`, e.code);
    }
    const indexPath = path.join(dir, INDEX_FILE);
    const singlePath = path.join(dir, SINGLE_FILE);
    const shards: SafetensorsFile[] = [];
    const where = new Map<string, SafetensorsFile>();
    let sharded = false;
    try {
      if (await exists(indexPath)) {
        sharded = true;
        const weightMap = await readIndex(indexPath);
        const byFile = new Map<string, string[]>();
        for (const [name, file] of Object.entries(weightMap)) {
          if (!byFile.has(file)) byFile.set(file, []);
          byFile.get(file)!.push(name);
        }
        for (const [file, names] of [...byFile].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
          const shardPath = path.join(dir, file);
          if (!(await exists(shardPath))) throw new CheckpointError(`${indexPath} lists shard ${file}, which is missing from ${dir}; the download or copy is incomplete`, 'CHECKPOINT_MISSING_SHARD');
          const st = await SafetensorsFile.open(shardPath);
          shards.push(st);
          for (const n of names) {
            if (!st.has(n)) throw new CheckpointError(`${indexPath} says tensor "${n}" is in ${file}, but ${file} has no such tensor`, 'CHECKPOINT_INDEX_MISMATCH');
            where.set(n, st);
          }
          for (const n of st.names()) {
            if (!where.has(n) || where.get(n) !== st) throw new CheckpointError(`${file} holds tensor "${n}", which ${INDEX_FILE} does not map to it`, 'CHECKPOINT_INDEX_MISMATCH');
          }
        }
      } else if (await exists(singlePath)) {
        const st = await SafetensorsFile.open(singlePath);
        shards.push(st);
        for (const n of st.names()) where.set(n, st);
      } else {
        const bin = await exists(path.join(dir, 'pytorch_model.bin'));
        throw new CheckpointError(
          `${dir} has neither ${SINGLE_FILE} nor ${INDEX_FILE}` + (bin ? '; pytorch_model.bin is not supported, convert it to safetensors first' : ''),
          'CHECKPOINT_MISSING',
        );
      }
      const ckpt = new HfCheckpoint(dir, rawConfig, config, shards, where, sharded);
      if (options.validate !== false) {
        // Before any per-layer work: the config may not claim more than the files hold.
        const elements = [...where].reduce((a, [n, st]) => a + numel(st.info(n).shape), 0);
        checkConfigAgainstTensors(config, where.size, elements, dir);
        ckpt.validate();
      }
      return ckpt;
    } catch (e) {
      await Promise.all(shards.map((s) => s.close()));
      throw e;
    }
  }

  /** Checks that every tensor the config implies is present with the right shape and a float dtype. */
  validate(): void {
    const missing: string[] = [];
    for (const name of expectedTensorNames(this.config)) {
      if (!this.where.has(name)) {
        missing.push(name);
        continue;
      }
      const t = this.info(name);
      const want = expectedShape(this.config, name);
      if (want && (want.length !== t.shape.length || want.some((d, i) => d !== t.shape[i]))) {
        throw new CheckpointError(`tensor "${name}" has shape [${t.shape}] but config.json implies [${want}]`, 'CHECKPOINT_SHAPE');
      }
      if (!isFloatDType(t.dtype)) throw new CheckpointError(`tensor "${name}" has dtype ${t.dtype}; only F32, F16 and BF16 weights are supported`, 'CHECKPOINT_DTYPE');
    }
    if (missing.length) {
      throw new CheckpointError(
        `${this.dir} is missing ${missing.length} tensor(s) that config.json implies, e.g. ${missing.slice(0, 3).join(', ')}`,
        'CHECKPOINT_MISSING_TENSOR',
      );
    }
  }

  /** Tensor names in storage order (shard by shard, data order within each). */
  tensorNames(): string[] {
    return this.shards.flatMap((s) => s.names()).filter((n) => this.where.has(n));
  }

  /** Names that carry model parameters (drops e.g. `rotary_emb.inv_freq`). */
  parameterNames(): string[] {
    return this.tensorNames().filter(isParameterTensor);
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  shardOf(name: string): SafetensorsFile {
    const s = this.where.get(name);
    if (!s) throw new CheckpointError(`${this.dir} has no tensor "${name}"`, 'CHECKPOINT_MISSING_TENSOR');
    return s;
  }

  info(name: string): TensorInfo {
    return this.shardOf(name).info(name);
  }

  async read(name: string): Promise<Buffer> {
    return this.shardOf(name).read(name);
  }

  /** Tensor `name` as an output source: copied byte for byte (in the kernel where possible). */
  fileSource(name: string): TensorFileSource {
    return { file: this.shardOf(name), name };
  }

  stream(name: string, chunkSize?: number): AsyncGenerator<Buffer> {
    return this.shardOf(name).stream(name, chunkSize);
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    if (!isFloatDType(t.dtype)) throw new CheckpointError(`tensor "${name}" has dtype ${t.dtype}, not a float type`, 'CHECKPOINT_DTYPE');
    return decodeToFloat32(await this.read(name), t.dtype);
  }

  /** Count of tensors per dtype. */
  dtypeCounts(): Partial<Record<DType, number>> {
    const out: Partial<Record<DType, number>> = {};
    for (const n of this.tensorNames()) {
      const d = this.info(n).dtype;
      out[d] = (out[d] ?? 0) + 1;
    }
    return out;
  }

  /** The dominant float dtype of the weights. */
  weightDType(): FloatDType {
    const counts = this.dtypeCounts();
    let best: FloatDType = 'F32';
    let bestN = -1;
    for (const d of ['F32', 'F16', 'BF16'] as const) if ((counts[d] ?? 0) > bestN) [best, bestN] = [d, counts[d] ?? 0];
    return best;
  }

  totalBytes(): number {
    return this.tensorNames().reduce((a, n) => a + this.info(n).byteLength, 0);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(
    () => true,
    () => false,
  );
}

/** A shard name from an index: a plain file name in the model directory (no "", ".", "..", "/" or NUL). */
function badShardName(file: string): string | null {
  if (file === '') return 'is empty';
  if (file === '.' || file === '..') return `is "${file}", a directory`;
  if (file.includes('\0')) return 'contains a NUL byte';
  if (file.includes('/') || file.includes('\\') || path.basename(file) !== file) return 'must be a plain file name in the model directory, without "/"';
  if (file.length > 255) return 'is longer than a file name can be';
  return null;
}

async function readIndex(indexPath: string): Promise<Record<string, string>> {
  const json = await readJsonFile(indexPath, dirFileError(indexPath, (m, c) => new CheckpointError(m, c === 'INPUT_JSON' ? 'CHECKPOINT_INDEX' : c)), { maxBytes: MAX_INDEX_JSON_BYTES });
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) throw new CheckpointError(`${indexPath} has no "weight_map" object`, 'CHECKPOINT_INDEX');
  for (const [k, v] of Object.entries(wm)) {
    if (typeof v !== 'string') throw new CheckpointError(`${indexPath}: weight_map["${k}"] must be a file name`, 'CHECKPOINT_INDEX');
    const why = badShardName(v);
    if (why) throw new CheckpointError(`${indexPath}: weight_map["${k}"] = ${JSON.stringify(v.slice(0, 300))} ${why}`, 'CHECKPOINT_INDEX');
  }
  return wm as Record<string, string>;
}

/** The bytes of tensor `name` of an open safetensors file, copied as they are (same dtype and size). */
export interface TensorFileSource {
  readonly file: SafetensorsFile;
  readonly name: string;
}

export function isTensorFileSource(s: OutputTensor['source']): s is TensorFileSource {
  return typeof s === 'object' && !(s instanceof Uint8Array) && 'file' in s;
}

/** A tensor to write: its spec plus where its bytes come from. */
export interface OutputTensor extends TensorSpec {
  /**
   * Bytes in memory, 'zeros' (a hole: nothing allocated or written), a chunk stream, or a tensor of an
   * open safetensors file (copied in the kernel where possible, see `SafetensorsWriter.copyFrom`).
   */
  readonly source: Uint8Array | 'zeros' | (() => AsyncIterable<Uint8Array>) | TensorFileSource;
}

export interface ShardPlan {
  file: string;
  tensors: OutputTensor[];
  bytes: number;
}

/** Splits tensors, in order, into shards of at most `maxShardBytes` (a tensor larger than that gets a shard of its own). */
export function planShards(tensors: readonly OutputTensor[], maxShardBytes: number = DEFAULT_MAX_SHARD_BYTES): ShardPlan[] {
  const groups: { tensors: OutputTensor[]; bytes: number }[] = [];
  for (const t of tensors) {
    const size = numel(t.shape) * dtypeSize(t.dtype);
    const cur = groups[groups.length - 1];
    if (cur && cur.bytes + size <= maxShardBytes) {
      cur.tensors.push(t);
      cur.bytes += size;
    } else groups.push({ tensors: [t], bytes: size });
  }
  if (groups.length === 0) groups.push({ tensors: [], bytes: 0 });
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  return groups.map((g, i) => ({ ...g, file: n === 1 ? SINGLE_FILE : `model-${pad(i + 1)}-of-${pad(n)}.safetensors` }));
}

export interface WriteModelOptions {
  /** The raw config.json object to write. */
  config: Record<string, unknown>;
  tensors: readonly OutputTensor[];
  maxShardBytes?: number;
  /** Copy AUX_FILES from this directory byte for byte (when present). */
  copyAuxFrom?: string;
  /** Extra files (name -> contents) written next to the model. */
  extraFiles?: Record<string, string | Uint8Array>;
  /** Called after every chunk with bytes written so far (for progress). */
  onProgress?: (bytesWritten: number, totalBytes: number) => void;
  /** Writer options for every shard (background writeback, in-kernel copies). */
  writer?: SafetensorsWriterOptions;
}

export interface WriteModelResult {
  readonly shards: ShardPlan[];
  readonly totalBytes: number;
  /** How `{ file, name }` sources were copied (in the kernel or through user space). */
  readonly copy: CopyStats;
}

/** Writes a model into an existing (usually temporary) directory. Use `saveModelDir` for the atomic version. */
export async function writeModelFiles(dir: string, opts: WriteModelOptions): Promise<WriteModelResult> {
  const shards = planShards(opts.tensors, opts.maxShardBytes);
  const totalBytes = shards.reduce((a, s) => a + s.bytes, 0);
  const copy: CopyStats = { kernelBytes: 0, userBytes: 0 };
  let done = 0;
  for (const shard of shards) {
    const w = await SafetensorsWriter.create(path.join(dir, shard.file), shard.tensors, undefined, opts.writer);
    try {
      for (const t of shard.tensors) {
        // An empty tensor has nothing to write (the writer skips past it on its own).
        if (numel(t.shape) === 0) continue;
        if (isTensorFileSource(t.source)) {
          await w.copyFrom(t.name, t.source.file, t.source.name, (n) => {
            done += n;
            opts.onProgress?.(done, totalBytes);
          });
        } else if (t.source === 'zeros') {
          await w.writeZeros(t.name);
          done += numel(t.shape) * dtypeSize(t.dtype);
        } else if (t.source instanceof Uint8Array) {
          await w.write(t.name, t.source);
          done += t.source.byteLength;
        } else {
          for await (const chunk of t.source()) {
            await w.write(t.name, chunk);
            done += chunk.byteLength;
            opts.onProgress?.(done, totalBytes);
          }
        }
        opts.onProgress?.(done, totalBytes);
      }
      await w.finish();
    } catch (e) {
      await w.abort();
      throw e;
    }
    copy.kernelBytes += w.copyStats.kernelBytes;
    copy.userBytes += w.copyStats.userBytes;
  }
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {};
    for (const s of shards) for (const t of s.tensors) weightMap[t.name] = s.file;
    const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]!]));
    await writeJsonAtomic(path.join(dir, INDEX_FILE), { metadata: { total_size: totalBytes }, weight_map: sorted });
  }
  await writeJsonAtomic(path.join(dir, 'config.json'), opts.config);
  if (opts.copyAuxFrom) await copyAuxFiles(opts.copyAuxFrom, dir);
  for (const [name, data] of Object.entries(opts.extraFiles ?? {})) await fsp.writeFile(path.join(dir, name), data);
  return { shards, totalBytes, copy };
}

/** Copies tokenizer / generation files byte for byte; returns the names copied. Only regular files are copied. */
export async function copyAuxFiles(from: string, to: string): Promise<string[]> {
  const copied: string[] = [];
  for (const f of AUX_FILES) {
    const src = path.join(from, f);
    if (!(await exists(src))) continue;
    // Refuse a FIFO or device (copying would block or never end) before copying.
    const { fh } = await openRegularFile(src, (d, c) => new CheckpointError(fileMessage(src, d), c));
    await fh.close();
    await fsp.copyFile(src, path.join(to, f));
    copied.push(f);
  }
  return copied;
}

/** Writes a complete model directory atomically (temp sibling + rename). */
export async function saveModelDir(outDir: string, opts: WriteModelOptions, atomic: AtomicDirOptions = {}): Promise<WriteModelResult> {
  return buildDirAtomic(outDir, (tmp) => writeModelFiles(tmp, opts), atomic);
}

/** All tensors of a checkpoint as an OutputTensor list (copied byte for byte, original dtype and order). */
export function passthroughTensors(ckpt: HfCheckpoint): OutputTensor[] {
  return ckpt.tensorNames().map((name) => {
    const t = ckpt.info(name);
    return { name, dtype: t.dtype, shape: t.shape, source: ckpt.fileSource(name) };
  });
}
