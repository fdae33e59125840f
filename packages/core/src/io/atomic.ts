/**
 * Atomic outputs: write to a temporary name in the same directory, fsync, rename. An interrupted run
 * leaves at most a temporary sibling, never something at the final path that looks complete.
 *
 * Temporary siblings are named `.<name>.tmp-<pid>-<hex>` (being built) and `.<name>.old-<pid>-<hex>`
 * (a previous output moved aside during a `--force` replace). The names carry the writing process's id,
 * so any later run that writes into the same directory recognises those of dead processes and cleans
 * them up (`recoverTempSiblings`): a `.tmp-` is deleted; an `.old-` whose output is missing (killed
 * between the two renames) is renamed back, so the previous output is never lost. Readers refuse both
 * names (`temporaryOutputOf`).
 *
 * `--force` replaces only a directory that a previous run of the same command wrote: each output holds
 * a marker file (`OUTPUT_MARKER`) naming the command, and inputs are never replaced.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OutputError } from '../errors';
import { asOutputError, openRegularFile } from './input-files';

/** Marker file in every directory output, naming the command that wrote it (what `--force` may replace). */
export const OUTPUT_MARKER = '.llama-pro-output.json';
/** Paths currently being built by this process (removed by `removeActiveTemps` on interrupt). */
const activeTemps = new Set<string>();
/** Previous outputs this process has moved aside mid-replace: aside -> target (put back on interrupt). */
const activeAsides = new Map<string, string>();
const TEMP_RE = /^\.(.+)\.(tmp|old)-(\d+)-([0-9a-f]{8})$/;

/** `.<name>.<tag>-<pid>-<hex>` next to `target`; asides moved in one replace share their `token` (hex). */
export function tempSibling(target: string, tag: 'tmp' | 'old' = 'tmp', token: string = randomBytes(4).toString('hex')): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.${tag}-${process.pid}-${token}`);
}

/** For a temporary sibling's name: what it is a temporary of, its kind and the writer's pid; else null. */
export function temporaryOutputOf(p: string): { target: string; kind: 'tmp' | 'old'; pid: number } | null {
  const m = TEMP_RE.exec(path.basename(path.resolve(p)));
  if (!m) return null;
  return { target: path.join(path.dirname(path.resolve(p)), m[1]!), kind: m[2] as 'tmp' | 'old', pid: Number(m[3]) };
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface RecoveredTemps {
  /** Unfinished temporaries of dead runs, deleted. */
  readonly removed: string[];
  /** Previous outputs moved aside by a run killed mid-replace, renamed back to their place. */
  readonly restored: string[];
}

/**
 * Cleans up after killed runs in `dir`: temporaries of processes that no longer exist are deleted, and a
 * previous output moved aside (`.old-`) is renamed back when its output path is empty (a replace was
 * cut between its two renames) or deleted when the new output is in place. `only` limits it to the
 * temporaries of one output name.
 */
export async function recoverTempSiblings(dir: string, only?: string): Promise<RecoveredTemps> {
  const removed: string[] = [];
  const restored: string[] = [];
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  const temps = entries
    .map((e) => ({ p: path.join(dir, e), m: TEMP_RE.exec(e) }))
    .filter((x): x is { p: string; m: RegExpExecArray } => x.m !== null && (only === undefined || x.m[1] === only) && !pidAlive(Number(x.m[3])));
  // Asides moved in one replace share pid and token: if any of their outputs is missing, the replace
  // was cut short and all of them go back (a model file and its data file must stay a pair); if all
  // outputs are in place, the replace finished and the asides are deleted.
  const groups = new Map<string, { p: string; target: string }[]>();
  for (const { p, m } of temps) {
    if (m[2] !== 'old') continue;
    const key = `${m[3]}-${m[4]}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push({ p, target: path.join(dir, m[1]!) });
  }
  for (const members of groups.values()) {
    const missing = await Promise.all(members.map(async (x) => !(await pathExists(x.target))));
    if (missing.some(Boolean)) {
      for (const x of members) {
        await fsp.rm(x.target, { recursive: true, force: true });
        await fsp.rename(x.p, x.target);
        restored.push(x.target);
      }
    } else {
      for (const x of members) {
        await fsp.rm(x.p, { recursive: true, force: true });
        removed.push(x.p);
      }
    }
  }
  for (const { p, m } of temps) {
    if (m[2] !== 'tmp') continue;
    await fsp.rm(p, { recursive: true, force: true });
    removed.push(p);
  }
  return { removed, restored };
}

/**
 * Renames each finished temporary onto its target, in order, keeping every existing target aside (one
 * shared token, see `recoverTempSiblings`) until all are in place, then deleting the asides. A run
 * killed midway leaves either the old set or the new set once the next run has recovered.
 */
export async function renameIntoPlace(pairs: readonly { tmp: string; target: string }[]): Promise<void> {
  const token = randomBytes(4).toString('hex');
  const asides: string[] = [];
  for (const { target } of pairs) {
    if (!(await pathExists(target))) continue;
    const old = tempSibling(target, 'old', token);
    activeAsides.set(old, target);
    await fsp.rename(target, old);
    asides.push(old);
  }
  for (const { tmp, target } of pairs) {
    await fsp.rename(tmp, target);
    activeTemps.delete(tmp);
  }
  for (const d of new Set(pairs.map((x) => path.dirname(x.target)))) await fsyncPath(d);
  for (const a of asides) activeAsides.delete(a);
  for (const a of asides) await fsp.rm(a, { recursive: true, force: true });
}

/** Registers a temporary this process is writing, so that an interrupt removes it (`exitCleanlyOnInterrupt`). */
export function trackTemp(tmp: string): void {
  activeTemps.add(tmp);
}

async function fsyncPath(p: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(p, 'r');
    await fh.sync();
  } catch {
    // Directories cannot be fsynced on every platform; the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

/** Writes `data` to `file` atomically. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempSibling(file);
  try {
    const fh = await fsp.open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    await fsyncPath(path.dirname(file));
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw asOutputError(e, file);
  }
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

export async function pathExists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** True when `inner` is `outer` or lies inside it (after resolving both). */
export function isInside(inner: string, outer: string): boolean {
  const rel = path.relative(path.resolve(outer), path.resolve(inner));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** `p` with symlinks resolved as far as it exists (the missing tail is appended unchanged). */
async function realish(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fsp.realpath(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(await realish(parent), path.basename(abs));
  }
}


/**
 * Synchronously deletes this process's unfinished temporaries and puts back any previous output a
 * replace in progress had moved aside (for a signal handler); returns the deleted temporaries.
 */
export function removeActiveTemps(): string[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs');
  const out = [...activeTemps];
  // A replace cut between its renames: every output of the group goes back to its previous version.
  for (const [aside, target] of activeAsides) {
    try {
      if (fs.existsSync(aside)) {
        fs.rmSync(target, { recursive: true, force: true });
        fs.renameSync(aside, target);
      }
    } catch {
      // the next run's recoverTempSiblings puts it back
    }
    activeAsides.delete(aside);
  }
  for (const p of out) {
    try {
      fs.rmSync(p, { recursive: true, force: true });
    } catch {
      // best effort: the next run cleans up what is left (the name carries this pid)
    }
    activeTemps.delete(p);
  }
  return out;
}

let interruptInstalled = false;

/**
 * Makes SIGINT / SIGTERM end the process the way a user expects from a long write: one line on stderr,
 * this process's unfinished temporaries deleted, exit status 130 (SIGINT) or 143 (SIGTERM). Installed
 * once; commands with their own interrupt handling (train saves a checkpoint) do not call it.
 */
export function exitCleanlyOnInterrupt(label = 'llama-pro'): void {
  if (interruptInstalled) return;
  interruptInstalled = true;
  const handler = (signal: NodeJS.Signals) => {
    const removed = removeActiveTemps();
    // On a terminal a progress bar may own the current line: start a fresh one.
    process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}${label}: interrupted (${signal}); ${removed.length ? `removed the unfinished output ${removed.join(', ')}` : 'nothing was written'}\n`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}

export interface AtomicDirOptions {
  /** Replace an existing output. Without it an existing output is refused. */
  force?: boolean;
  /**
   * The command this output belongs to (`convert`, `expand`, ...). It is written into `OUTPUT_MARKER`, and
   * `force` replaces only a directory whose marker names the same command (or that `isPreviousOutput`
   * accepts). Without it no marker is written and `force` replaces only such directories as
   * `isPreviousOutput` accepts, or any when neither is given (internal callers with fixed paths).
   */
  owner?: string;
  /** Write `OUTPUT_MARKER` into the output (default true when `owner` is set; false where a manifest says it). */
  marker?: boolean;
  /** Recognises previous outputs that carry no marker (written by older versions). */
  isPreviousOutput?: (dir: string) => Promise<boolean>;
  /** Paths that are read by this run: the output may neither contain them nor lie inside them. */
  inputs?: readonly string[];
}

interface OutputMarker {
  format: 'llama-pro.output';
  command: string;
  createdAt: string;
  host: string;
}

async function readMarker(dir: string): Promise<OutputMarker | null> {
  try {
    const { fh, stat } = await openRegularFile(path.join(dir, OUTPUT_MARKER), (d, c) => new OutputError(d, c));
    try {
      if (stat.size > 4096) return null;
      const m = JSON.parse(await fh.readFile('utf8')) as OutputMarker | null;
      return m && m.format === 'llama-pro.output' && typeof m.command === 'string' ? m : null;
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
}

/** The command recorded in `dir`'s output marker, or null when it has none. */
export async function outputOwner(dir: string): Promise<string | null> {
  return (await readMarker(dir))?.command ?? null;
}

/** Refuses an output path that is, contains or lies inside an input (after resolving symlinks). */
export async function checkNotInput(target: string, inputs: readonly string[]): Promise<void> {
  const out = await realish(target);
  for (const input of inputs) {
    const inp = await realish(input);
    if (isInside(inp, out)) throw new OutputError(`output ${target} ${inp === out ? 'is' : 'contains'} the input ${input}; writing there would destroy the input, choose another path`, 'OUTPUT_CONTAINS_INPUT');
    if (isInside(out, inp)) throw new OutputError(`output ${target} is inside the input ${input}; choose a path outside it`, 'OUTPUT_INSIDE_INPUT');
  }
}

/**
 * Checks, before anything is written, that `target` may be (re)written: it is not an input, and when it
 * exists, `force` is set and it is a previous output of the same command (see `AtomicDirOptions`).
 */
export async function checkReplaceable(target: string, options: AtomicDirOptions = {}): Promise<void> {
  await checkNotInput(target, options.inputs ?? []);
  let st;
  try {
    st = await fsp.lstat(target);
  } catch {
    return;
  }
  if (!options.force) throw new OutputError(`output ${target} already exists; choose another path or pass --force to replace it`, 'OUTPUT_EXISTS');
  if (options.owner === undefined && options.isPreviousOutput === undefined) return;
  if (!st.isDirectory()) throw new OutputError(`output ${target} exists and is a ${st.isSymbolicLink() ? 'symbolic link' : 'file'}, not a directory this command wrote; --force replaces only previous outputs, remove it yourself or choose another path`, 'OUTPUT_NOT_OURS');
  const marker = await readMarker(target);
  if (marker && marker.command === options.owner) return;
  if (options.isPreviousOutput && (await options.isPreviousOutput(target))) return;
  throw new OutputError(
    marker
      ? `output ${target} was written by \`llama-pro ${marker.command}\`, not \`llama-pro ${options.owner}\`; --force replaces only this command's previous outputs, remove it yourself or choose another path`
      : `output ${target} exists and is not a previous output of \`llama-pro ${options.owner ?? 'this command'}\` (it has no ${OUTPUT_MARKER}); --force will not replace it, remove it yourself or choose another path`,
    'OUTPUT_NOT_OURS',
  );
}

/**
 * Builds a directory atomically: `build` fills a temporary sibling directory, which is renamed onto
 * `target` only when `build` resolves. On failure the temporary directory is removed. An existing output
 * (with `force`, see `checkReplaceable`) is moved aside, the new one renamed in, then the old one
 * deleted; a run killed in between is repaired by the next (`recoverTempSiblings`).
 */
export async function buildDirAtomic<T>(target: string, build: (tmpDir: string) => Promise<T>, options: AtomicDirOptions = {}): Promise<T> {
  const resolved = path.resolve(target);
  await fsp.mkdir(path.dirname(resolved), { recursive: true });
  await recoverTempSiblings(path.dirname(resolved));
  await checkReplaceable(resolved, options);
  const tmp = tempSibling(resolved);
  activeTemps.add(tmp);
  let result: T;
  try {
    await fsp.mkdir(tmp);
    if (options.owner !== undefined && options.marker !== false) {
      const marker: OutputMarker = { format: 'llama-pro.output', command: options.owner, createdAt: new Date().toISOString(), host: os.hostname() };
      await fsp.writeFile(path.join(tmp, OUTPUT_MARKER), JSON.stringify(marker) + '\n');
    }
    result = await build(tmp);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    activeTemps.delete(tmp);
    throw asOutputError(e, target);
  }
  try {
    await renameIntoPlace([{ tmp, target: resolved }]);
  } catch (e) {
    throw asOutputError(e, target);
  }
  return result;
}
