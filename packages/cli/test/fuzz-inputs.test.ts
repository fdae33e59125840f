/**
 * Issue 16 item 3: a seeded fuzz over mutated inputs: safetensors files (bytes, lengths, header fields,
 * BOM, deep nesting), config.json (extreme or wrong-typed values, deep nesting, bytes), the shard
 * index (weight_map values such as "" or ".", keys, shards swapped for FIFOs or devices) and llama2.c
 * files (v0 and v1 headers, bytes, truncation). Each case runs the real CLI (`inspect`, then `convert` or
 * `expand`) in a child process (support/fuzz-child.ts); every case must end in success or one typed
 * `llama-pro: ...` line, never "unexpected error", a crash or a hang. The watchdog is generous (a case
 * that prints nothing for WATCHDOG_MS is killed and reported; there is no assertion on speed), and the
 * child's peak RSS is bounded.
 */
jest.setTimeout(900_000);
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';

const CASES = 520;
const CHILDREN = 2;
const WATCHDOG_MS = 60_000;
/** Peak RSS allowed for a child (Node + the CLI's modules take ~300 MB; the attack inputs reached 3.5 GB). */
const MAX_RSS_KIB = 1024 * 1024;
const REGISTER = path.join(__dirname, '../../train/test/support/ts-register.js');
const CHILD = path.join(__dirname, 'support/fuzz-child.ts');

interface CaseResult {
  i: number;
  family: string;
  what: string;
  outcome: 'ok' | 'typed' | 'untyped';
  line: string;
  rss: number;
}

/** The same legacy/v1 llama2.c layouts as karpathy/llama2.c export.py writes (see core/src/llama2c/import.ts). */
async function llama2cFile(file: string, version: 0 | 1): Promise<void> {
  const h = { dim: 16, hidden: 32, layers: 2, heads: 2, kvHeads: 1, vocab: 32, seq: 16 };
  const hs = h.dim / h.heads;
  const kv = h.kvHeads * hs;
  const mats = h.layers * (2 * h.dim * h.dim + 2 * kv * h.dim + 3 * h.hidden * h.dim);
  const floats = version === 0 ? h.vocab * h.dim + mats + 2 * h.layers * h.dim + h.dim + h.seq * hs : 2 * h.layers * h.dim + h.dim + h.vocab * h.dim + mats;
  let head: Buffer;
  const fields = [h.dim, h.hidden, h.layers, h.heads, h.kvHeads, h.vocab, h.seq];
  if (version === 0) {
    head = Buffer.alloc(28);
    fields.forEach((v, i) => head.writeInt32LE(v, 4 * i));
  } else {
    head = Buffer.alloc(256);
    head.writeUInt32LE(0x616b3432, 0);
    head.writeInt32LE(1, 4);
    fields.forEach((v, i) => head.writeInt32LE(v, 8 + 4 * i));
    head.writeUInt8(1, 36);
  }
  const body = new Float32Array(floats);
  for (let i = 0; i < floats; i++) body[i] = ((i * 37) % 101) / 500 - 0.1;
  await fsp.writeFile(file, Buffer.concat([head, Buffer.from(body.buffer)]));
}

function runChild(seeds: string, work: string, first: number, count: number): Promise<{ results: CaseResult[]; maxRssKiB: number | null; problems: string[] }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-r', REGISTER, CHILD, seeds, work, String(first), String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const results: CaseResult[] = [];
    const problems: string[] = [];
    let maxRssKiB: number | null = null;
    let current = -1;
    let buf = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        problems.push(`case ${current}: no progress for ${WATCHDOG_MS} ms (hang); killed`);
        child.kill('SIGKILL');
      }, WATCHDOG_MS);
    };
    arm();
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        const m = JSON.parse(l) as { start?: number; done?: number; maxRssKiB?: number } & Partial<CaseResult>;
        if (m.start !== undefined) current = m.start;
        else if (m.done !== undefined) maxRssKiB = m.maxRssKiB!;
        else results.push(m as CaseResult);
        arm();
      }
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) problems.push(`child for cases ${first}..${first + count - 1} exited ${code ?? signal} during case ${current}: ${stderr.slice(-2000)}`);
      resolve({ results, maxRssKiB, problems });
    });
  });
}

it(`${CASES} seeded mutated safetensors/config/index/llama2.c inputs end in success or one typed error`, async () => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-fuzz-'));
  try {
    const seeds = path.join(root, 'seeds');
    await fsp.mkdir(seeds);
    await writeRandomCheckpoint(path.join(seeds, 'single'), tinyRawConfig({ layers: 2, hiddenSize: 16, intermediateSize: 32, heads: 2, kvHeads: 1, vocab: 32 }), { seed: 1 });
    await writeRandomCheckpoint(path.join(seeds, 'sharded'), tinyRawConfig({ layers: 2, hiddenSize: 16, intermediateSize: 32, heads: 2, kvHeads: 1, vocab: 32 }), { seed: 2, maxShardBytes: 3000 });
    await fsp.writeFile(path.join(seeds, 'single', 'tokenizer_config.json'), '{}');
    await llama2cFile(path.join(seeds, 'v0.bin'), 0);
    await llama2cFile(path.join(seeds, 'v1.bin'), 1);
    const per = Math.ceil(CASES / CHILDREN);
    const runs = [];
    // Sequential children: the machine running CI may be small; each child gets its own work dir.
    for (let c = 0; c < CHILDREN; c++) {
      const work = path.join(root, `work-${c}`);
      await fsp.mkdir(work);
      runs.push(await runChild(seeds, work, c * per, Math.min(per, CASES - c * per)));
    }
    const results = runs.flatMap((r) => r.results);
    const problems = runs.flatMap((r) => r.problems);
    const untyped = results.filter((r) => r.outcome === 'untyped').map((r) => `case ${r.i} (${r.family}: ${r.what}): ${r.line}`);
    expect(problems).toEqual([]);
    expect(untyped).toEqual([]);
    expect(results.length).toBe(CASES);
    // The fuzz is not vacuous: a good share of mutations is refused in every family.
    for (const family of ['safetensors', 'config', 'index', 'llama2c-v0', 'llama2c-v1']) {
      const f = results.filter((r) => r.family === family);
      expect(f.filter((r) => r.outcome === 'typed').length).toBeGreaterThan(f.length / 3);
    }
    for (const r of runs) {
      expect(r.maxRssKiB).not.toBeNull();
      expect(r.maxRssKiB!).toBeLessThan(MAX_RSS_KIB);
    }
    // Left behind by no case: the work dirs hold nothing (every case cleans its own dir, and no temp escapes).
    for (let c = 0; c < CHILDREN; c++) expect(await fsp.readdir(path.join(root, `work-${c}`))).toEqual([]);
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
});
