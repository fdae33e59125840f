/**
 * Safetensors IO, streaming in both directions.
 *
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON (`{name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__": {string: string}}`), then the data section. Offsets
 * are relative to the data section. The reader validates everything before trusting it and reads
 * tensors lazily by byte range; the writer streams tensors in order with bounded memory.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { SafetensorsError } from '../errors';
import { type DType, dtypeSize, isDType } from './dtype';
import { tempSibling } from './atomic';
import { MAX_JSON_DEPTH, errnoDetail, jsonDepthViolation, openRegularFile } from './input-files';
import { type RangeCopier, rangeCopier } from './native';

/** Upper bound on the JSON header (the reference implementation's limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Offset of the first byte relative to the data section. */
  readonly begin: number;
  /** Byte length (= product(shape) * dtype size). */
  readonly byteLength: number;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export interface SafetensorsHeader {
  readonly headerLength: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in data order (ascending offset). */
  readonly tensors: readonly TensorInfo[];
  readonly dataLength: number;
}

/** Parses and validates a header; `fileSize` is the total file size in bytes. Throws SafetensorsError. */
export function parseSafetensorsHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const fail = (detail: string, code?: string): never => {
    throw new SafetensorsError(file, detail, code);
  };
  const headerLength = headerBytes.byteLength;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8; the file is not a safetensors file or is corrupt', 'SAFETENSORS_HEADER');
  }
  // The first byte itself must be "{": a UTF-8 byte-order mark is not JSON (the reference reader,
  // serde_json, refuses it too), and TextDecoder would silently strip one.
  if (headerBytes[0] === 0xef && headerBytes[1] === 0xbb && headerBytes[2] === 0xbf) fail('header starts with a UTF-8 byte-order mark; safetensors headers are plain JSON, the file is corrupt', 'SAFETENSORS_HEADER');
  if (headerBytes[0] !== 0x7b || !text.startsWith('{')) fail('header does not start with "{"; the file is not a safetensors file or is corrupt', 'SAFETENSORS_HEADER');
  if (jsonDepthViolation(text, MAX_JSON_DEPTH) >= 0) fail(`header JSON nests deeper than ${MAX_JSON_DEPTH} levels; the file is corrupt`, 'SAFETENSORS_HEADER');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail(`header is not well-formed JSON (${(e as Error).message}); the file is corrupt`, 'SAFETENSORS_HEADER');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('header JSON is not an object', 'SAFETENSORS_HEADER');
  const dataLength = fileSize - 8 - headerLength;
  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('"__metadata__" must be an object of strings', 'SAFETENSORS_HEADER');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`"__metadata__.${k}" must be a string`, 'SAFETENSORS_HEADER');
        metadata[k] = v as string;
      }
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(`tensor "${name}": entry is not an object`, 'SAFETENSORS_HEADER');
    const { dtype, shape, data_offsets: offs } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDType(dtype)) fail(`tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`, 'SAFETENSORS_DTYPE');
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor "${name}": shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`, 'SAFETENSORS_SHAPE');
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor "${name}": data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offs)}`, 'SAFETENSORS_OFFSETS');
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) fail(`tensor "${name}": data_offsets end ${end} < begin ${begin}`, 'SAFETENSORS_OFFSETS');
    const expected = numel(shape as number[]) * dtypeSize(dtype as DType);
    if (!Number.isSafeInteger(expected)) fail(`tensor "${name}": shape ${JSON.stringify(shape)} is too large`, 'SAFETENSORS_SHAPE');
    if (end - begin !== expected) {
      fail(
        `tensor "${name}": ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes but data_offsets span ${end - begin}`,
        'SAFETENSORS_SIZE_MISMATCH',
      );
    }
    if (end > dataLength) {
      fail(
        `tensor "${name}": data_offsets [${begin}, ${end}] lie outside the data section (${Math.max(dataLength, 0)} bytes); the file is truncated or corrupt`,
        'SAFETENSORS_OFFSETS',
      );
    }
    tensors.push({ name, dtype: dtype as DType, shape: [...(shape as number[])], begin, byteLength: end - begin });
  }
  tensors.sort((a, b) => a.begin - b.begin || a.byteLength - b.byteLength);
  let cursor = 0;
  for (const t of tensors) {
    if (t.begin < cursor) fail(`tensor "${t.name}" overlaps the tensor before it (starts at ${t.begin}, previous ends at ${cursor})`, 'SAFETENSORS_OVERLAP');
    if (t.begin > cursor) fail(`gap in the data section before tensor "${t.name}" (bytes ${cursor}..${t.begin} belong to no tensor)`, 'SAFETENSORS_GAP');
    cursor = t.begin + t.byteLength;
  }
  if (cursor !== dataLength) {
    fail(
      `data section is ${dataLength} bytes but tensors cover ${cursor}; the file has ${dataLength > cursor ? 'trailing bytes' : 'been truncated'}`,
      dataLength > cursor ? 'SAFETENSORS_GAP' : 'SAFETENSORS_TRUNCATED',
    );
  }
  return { headerLength, metadata, tensors, dataLength };
}

/** A validated safetensors file whose tensors are read lazily by byte range. */
export class SafetensorsFile {
  private readonly byName: Map<string, TensorInfo>;

  private constructor(
    readonly path: string,
    private readonly fh: fsp.FileHandle,
    readonly fileSize: number,
    readonly header: SafetensorsHeader,
  ) {
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** Opens and validates `file`. Throws SafetensorsError without large allocations on malformed input. */
  static async open(file: string): Promise<SafetensorsFile> {
    const { fh, stat } = await openRegularFile(file, (detail, code) => new SafetensorsError(file, detail, code === 'INPUT_MISSING' ? 'SAFETENSORS_MISSING' : code === 'INPUT_TRUNCATED' ? 'SAFETENSORS_TRUNCATED' : code));
    try {
      const size = stat.size;
      if (size < 8) throw new SafetensorsError(file, `file is ${size} bytes, shorter than the 8-byte header length; it is truncated`, 'SAFETENSORS_TRUNCATED');
      const lenBuf = Buffer.alloc(8);
      await readExactly(fh, lenBuf, 0, file);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_BYTES)) {
        throw new SafetensorsError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`, 'SAFETENSORS_HEADER_TOO_LARGE');
      }
      const headerLength = Number(n);
      if (8 + headerLength > size) {
        throw new SafetensorsError(file, `header length ${headerLength} runs past the end of the ${size}-byte file; it is truncated`, 'SAFETENSORS_TRUNCATED');
      }
      const headerBytes = Buffer.alloc(headerLength);
      await readExactly(fh, headerBytes, 8, file);
      const header = parseSafetensorsHeader(file, headerBytes, size);
      return new SafetensorsFile(file, fh, size, header);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  get dataStart(): number {
    return 8 + this.header.headerLength;
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  /** Tensors in data order. */
  get tensors(): readonly TensorInfo[] {
    return this.header.tensors;
  }

  names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new SafetensorsError(this.path, `no tensor named "${name}"`, 'SAFETENSORS_NO_TENSOR');
    return t;
  }

  /** Reads a tensor's bytes (a fresh buffer). */
  async read(name: string): Promise<Buffer> {
    const t = this.info(name);
    const buf = Buffer.alloc(t.byteLength);
    await readExactly(this.fh, buf, this.dataStart + t.begin, this.path);
    return buf;
  }

  /** Reads `length` bytes starting `offset` bytes into a tensor. */
  async readRange(name: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const t = this.info(name);
    if (offset < 0 || length < 0 || offset + length > t.byteLength) {
      throw new SafetensorsError(this.path, `range ${offset}+${length} is outside tensor "${name}" (${t.byteLength} bytes)`, 'SAFETENSORS_RANGE');
    }
    const buf = into ? into.subarray(0, length) : Buffer.alloc(length);
    await readExactly(this.fh, buf, this.dataStart + t.begin + offset, this.path);
    return buf;
  }

  /**
   * Where a tensor's bytes lie in the file (absolute offset) and the open descriptor, for in-kernel
   * copies (`SafetensorsWriter.copyFrom`). The descriptor belongs to this file: do not close it.
   */
  byteRange(name: string): { readonly fd: number; readonly offset: number; readonly length: number } {
    const t = this.info(name);
    return { fd: this.fh.fd, offset: this.dataStart + t.begin, length: t.byteLength };
  }

  /** Streams a tensor's bytes in chunks of at most `chunkSize` bytes. */
  async *stream(name: string, chunkSize = 1 << 20): AsyncGenerator<Buffer> {
    const t = this.info(name);
    if (t.byteLength === 0) return;
    const s = createReadStream('', {
      fd: this.fh.fd,
      autoClose: false,
      start: this.dataStart + t.begin,
      end: this.dataStart + t.begin + t.byteLength - 1,
      highWaterMark: chunkSize,
    });
    let got = 0;
    for await (const chunk of s) {
      got += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (got !== t.byteLength) throw new SafetensorsError(this.path, `tensor "${name}" ended after ${got} of ${t.byteLength} bytes; the file changed while reading`, 'SAFETENSORS_TRUNCATED');
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

async function readExactly(fh: fsp.FileHandle, buf: Uint8Array, position: number, file: string): Promise<void> {
  let off = 0;
  while (off < buf.byteLength) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, off, buf.byteLength - off, position + off));
    } catch (e) {
      throw new SafetensorsError(file, errnoDetail(e).detail, 'SAFETENSORS_READ');
    }
    if (bytesRead === 0) throw new SafetensorsError(file, `unexpected end of file at byte ${position + off}; the file is truncated`, 'SAFETENSORS_TRUNCATED');
    off += bytesRead;
  }
}

export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/**
 * Serializes a header for tensors laid out in the given order. `__metadata__` comes first
 * (`{"format": "pt"}` unless given), and the JSON is padded with spaces to an 8-byte boundary.
 */
export function buildSafetensorsHeader(specs: readonly TensorSpec[], metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const obj: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  let offset = 0;
  const seen = new Set<string>();
  for (const s of specs) {
    if (s.name === '__metadata__' || seen.has(s.name)) throw new SafetensorsError('<writer>', `duplicate or reserved tensor name "${s.name}"`, 'SAFETENSORS_WRITE');
    seen.add(s.name);
    const len = numel(s.shape) * dtypeSize(s.dtype);
    obj[s.name] = { dtype: s.dtype, shape: [...s.shape], data_offsets: [offset, offset + len] };
    offset += len;
  }
  const json = Buffer.from(JSON.stringify(obj), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return out;
}

/** Bytes written between two background writebacks (see `SafetensorsWriterOptions.writebackBytes`). */
export const DEFAULT_WRITEBACK_BYTES = 64 << 20;

export interface SafetensorsWriterOptions {
  /**
   * Start writing dirty pages to disk (an fdatasync in the background, one at a time) every this many
   * bytes, so the disk works while the copy goes on instead of all at the final fsync; 0 turns it off.
   * Default 64 MiB. The final fsync in `finish()` happens regardless.
   */
  writebackBytes?: number;
  /**
   * `copyFrom` moves bytes in the kernel (copy_file_range, via the optional @llama-pro/native-io) when it
   * is available (default true); false always copies through user space. Either way the bytes are the same.
   */
  nativeCopy?: boolean;
}

/** Bytes per step of `copyFrom` (one in-kernel copy, or one read/write through a buffer). */
const COPY_STEP = 64 << 20;
const USER_COPY_CHUNK = 8 << 20;

/** How `copyFrom` moved bytes so far (for reports and tests). */
export interface CopyStats {
  /** Bytes copied in the kernel (copy_file_range). */
  kernelBytes: number;
  /** Bytes copied through user-space buffers. */
  userBytes: number;
}

/**
 * Streaming writer: the header is written from the specs up front, then each tensor's bytes must be
 * written in spec order (in as many chunks as convenient), or copied whole from another safetensors
 * file (`copyFrom`: in the kernel where possible). Zero tensors (`writeZeros`) are left as holes:
 * nothing is written, the file reads back zeros there (sparse where the filesystem supports it).
 * The file appears at `path` only on `finish()`; `abort()` (or any error) removes the temporary file.
 */
export class SafetensorsWriter {
  private index = 0;
  private written = 0;
  private position = 0;
  private readonly sizes: number[];
  private readonly writebackBytes: number;
  private lastWriteback = 0;
  private writeback: Promise<void> | undefined;
  private writebackError: unknown;
  private native: RangeCopier | undefined;
  private buffers: [Buffer, Buffer] | undefined;
  readonly copyStats: CopyStats = { kernelBytes: 0, userBytes: 0 };

  private constructor(
    readonly path: string,
    private readonly tmpPath: string,
    private readonly fh: fsp.FileHandle,
    readonly specs: readonly TensorSpec[],
    options: SafetensorsWriterOptions,
  ) {
    this.sizes = specs.map((s) => numel(s.shape) * dtypeSize(s.dtype));
    this.writebackBytes = options.writebackBytes ?? DEFAULT_WRITEBACK_BYTES;
    this.native = options.nativeCopy === false ? undefined : rangeCopier();
  }

  static async create(path: string, specs: readonly TensorSpec[], metadata?: Record<string, string>, options: SafetensorsWriterOptions = {}): Promise<SafetensorsWriter> {
    const header = buildSafetensorsHeader(specs, metadata);
    const tmp = tempSibling(path);
    const fh = await fsp.open(tmp, 'wx');
    const w = new SafetensorsWriter(path, tmp, fh, specs, options);
    try {
      await w.raw(header);
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w;
  }

  /** Name of the tensor whose bytes are expected next, or undefined when all are written. */
  get current(): TensorSpec | undefined {
    this.skipEmpty();
    return this.specs[this.index];
  }

  private skipEmpty(): void {
    while (this.index < this.specs.length && this.sizes[this.index] === this.written) {
      this.index++;
      this.written = 0;
    }
  }

  private async raw(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.byteLength) {
      const { bytesWritten } = await this.fh.write(chunk, off, chunk.byteLength - off, this.position);
      off += bytesWritten;
      this.position += bytesWritten;
    }
    this.maybeWriteback();
  }

  private maybeWriteback(): void {
    if (this.writebackBytes <= 0 || this.writeback || this.position - this.lastWriteback < this.writebackBytes) return;
    this.lastWriteback = this.position;
    this.writeback = this.fh
      .datasync()
      .catch((e: unknown) => {
        this.writebackError ??= e;
      })
      .finally(() => {
        this.writeback = undefined;
      });
  }

  private async settleWriteback(): Promise<void> {
    await this.writeback;
    if (this.writebackError !== undefined) throw this.writebackError;
  }

  /** Appends bytes of the tensor `name` (must be the current tensor). */
  /**
   * The spec of `name`, which must be the tensor due next (`whole`: and not yet started, for the
   * methods that write a tensor in one go).
   */
  private due(name: string, whole: boolean): TensorSpec {
    this.skipEmpty();
    const spec = this.specs[this.index];
    if (!spec || spec.name !== name || (whole && this.written !== 0)) {
      throw new SafetensorsError(this.path, `tensor "${name}" written out of order; expected ${spec ? `"${spec.name}"` : 'no more tensors'}`, 'SAFETENSORS_WRITE');
    }
    return spec;
  }

  async write(name: string, chunk: Uint8Array): Promise<void> {
    this.due(name, false);
    const size = this.sizes[this.index]!;
    if (this.written + chunk.byteLength > size) {
      throw new SafetensorsError(this.path, `tensor "${name}" got ${this.written + chunk.byteLength} bytes, more than its ${size}`, 'SAFETENSORS_WRITE');
    }
    await this.raw(chunk);
    this.written += chunk.byteLength;
  }

  /**
   * Writes the whole tensor `name` (the current one) with the bytes of tensor `srcName` of `src`, which
   * must have the same dtype and byte length. Bytes move in the kernel (copy_file_range) when the addon
   * is available and the filesystems allow it, else through two reused buffers (the read of the next
   * chunk overlaps the write of this one). `onBytes` is called after each step with the bytes it moved.
   */
  async copyFrom(name: string, src: SafetensorsFile, srcName: string = name, onBytes?: (bytes: number) => void): Promise<void> {
    const spec = this.due(name, true);
    const from = src.info(srcName);
    const size = this.sizes[this.index]!;
    if (from.dtype !== spec.dtype || from.byteLength !== size) {
      throw new SafetensorsError(
        this.path,
        `cannot copy "${srcName}" (${from.dtype} [${from.shape.join(', ')}]) from ${src.path} into "${name}" (${spec.dtype} [${spec.shape.join(', ')}]): dtype or size differ`,
        'SAFETENSORS_WRITE',
      );
    }
    const range = src.byteRange(srcName);
    let done = 0;
    while (done < size && this.native) {
      const n = Math.min(COPY_STEP, size - done);
      try {
        await this.native.copyFileRange(range.fd, range.offset + done, this.fh.fd, this.position, n);
      } catch (e) {
        // This filesystem pair cannot copy in the kernel: the rest goes through user space. A partial
        // in-kernel copy is simply overwritten.
        if ((e as { fallback?: boolean }).fallback) {
          this.native = undefined;
          break;
        }
        const code = (e as NodeJS.ErrnoException).code ?? '';
        throw new SafetensorsError(this.path, `copying tensor "${srcName}" from ${src.path} failed: ${(e as Error).message} (${code})`, 'SAFETENSORS_WRITE');
      }
      done += n;
      this.position += n;
      this.written += n;
      this.copyStats.kernelBytes += n;
      onBytes?.(n);
      this.maybeWriteback();
    }
    if (done < size) await this.copyThroughBuffers(name, src, srcName, done, onBytes);
  }

  private async copyThroughBuffers(name: string, src: SafetensorsFile, srcName: string, start: number, onBytes?: (bytes: number) => void): Promise<void> {
    const size = this.sizes[this.index]!;
    const bufs = (this.buffers ??= [Buffer.allocUnsafe(USER_COPY_CHUNK), Buffer.allocUnsafe(USER_COPY_CHUNK)]);
    let which = 0;
    let next = start;
    const read = (): Promise<Buffer> | undefined => {
      if (next >= size) return undefined;
      const n = Math.min(USER_COPY_CHUNK, size - next);
      const p = src.readRange(srcName, next, n, bufs[which]);
      // A read still in flight when a write fails must not crash the process.
      p.catch(() => undefined);
      next += n;
      which ^= 1;
      return p;
    };
    for (let pending = read(); pending; ) {
      const chunk = await pending;
      pending = read();
      await this.write(name, chunk);
      this.copyStats.userBytes += chunk.length;
      onBytes?.(chunk.length);
    }
  }

  /** Writes a whole tensor of zeros without allocating or writing its bytes (a hole in the file). */
  async writeZeros(name: string): Promise<void> {
    this.due(name, true);
    // A hole: `finish()` extends the file to its full length when zeros come last.
    this.position += this.sizes[this.index]!;
    this.written = this.sizes[this.index]!;
    this.skipEmpty();
  }

  /** Verifies every tensor is complete, fsyncs and renames into place. */
  async finish(): Promise<void> {
    this.skipEmpty();
    if (this.index < this.specs.length) {
      const spec = this.specs[this.index]!;
      await this.abort();
      throw new SafetensorsError(this.path, `tensor "${spec.name}" is incomplete (${this.written} of ${this.sizes[this.index]} bytes) at finish`, 'SAFETENSORS_WRITE');
    }
    try {
      await this.settleWriteback();
      if ((await this.fh.stat()).size !== this.position) await this.fh.truncate(this.position);
      await this.fh.sync();
    } catch (e) {
      await this.abort();
      throw e;
    }
    await this.fh.close();
    await fsp.rename(this.tmpPath, this.path);
  }

  async abort(): Promise<void> {
    await this.writeback;
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.tmpPath, { force: true });
  }
}

/** Writes a whole safetensors file from in-memory tensors, in the given order. */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyArray<TensorSpec & { data: Uint8Array }>,
  metadata?: Record<string, string>,
): Promise<void> {
  const w = await SafetensorsWriter.create(path, tensors, metadata);
  try {
    for (const t of tensors) if (t.data.byteLength > 0) await w.write(t.name, t.data);
  } catch (e) {
    await w.abort();
    throw e;
  }
  await w.finish();
}
