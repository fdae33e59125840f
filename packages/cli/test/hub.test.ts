/**
 * Models by hub id. No network here: a cache is built on disk in huggingface_hub's layout, and the
 * download path runs against a fake hub (a fetch function answering the three requests a download makes:
 * model info, the file tree, ranged file GETs). Expected checksums come from outside the code under
 * test: sha256 from node:crypto over the served bytes, git blob ids from `git hash-object`.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseHubId } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint, writeSentencePieceTokenizer } from '@llama-pro/core/testing';
import { downloadSnapshot, resolveModelSpec } from '../src/hub';
import { runCli } from './run-cli';

const COMMIT = '0123456789abcdef0123456789abcdef01234567';

interface Served {
  path: string;
  bytes: Buffer;
  lfs: boolean;
}

/** A fake hub for org/tiny at COMMIT; `tamper` corrupts the bytes of one file. */
function fakeHub(files: Served[], seen: { url: string; headers: Record<string, string> }[], tamper?: string): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    const headers = (init?.headers ?? {}) as Record<string, string>;
    seen.push({ url, headers });
    const u = new URL(url);
    if (u.pathname === '/api/models/org/tiny/revision/main') return Response.json({ _id: 'x', id: 'org/tiny', sha: COMMIT, private: false, lastModified: '2024-01-01T00:00:00Z' });
    if (u.pathname === `/api/models/org/tiny/tree/${COMMIT}`)
      return Response.json(
        files.map((f) => ({
          type: 'file',
          path: f.path,
          size: f.bytes.length,
          oid: f.lfs ? 'f'.repeat(40) : gitBlobId(f.bytes),
          ...(f.lfs ? { lfs: { oid: createHash('sha256').update(f.bytes).digest('hex'), size: f.bytes.length, pointerSize: 130 } } : {}),
        })),
      );
    const m = new RegExp(`^/org/tiny/resolve/${COMMIT}/(.+)$`).exec(u.pathname);
    const f = m && files.find((x) => x.path === decodeURIComponent(m[1]!));
    if (!f) return new Response('not found', { status: 404 });
    let body = f.bytes;
    if (tamper === f.path) body = Buffer.concat([body.subarray(0, body.length - 1), Buffer.from([body[body.length - 1]! ^ 1])]);
    const range = /^bytes=(\d+)-$/.exec(headers['Range'] ?? '');
    if (range) return new Response(body.subarray(Number(range[1])), { status: 206, headers: { 'content-range': `bytes ${range[1]}-${body.length - 1}/${body.length}` } });
    return new Response(body, { status: 200 });
  }) as typeof fetch;
}

let tmpFiles: string;
function gitBlobId(bytes: Buffer): string {
  const f = path.join(tmpFiles, `blob-${createHash('md5').update(bytes).digest('hex')}`);
  writeFileSync(f, bytes);
  return execFileSync('git', ['hash-object', f], { encoding: 'utf8' }).trim();
}

describe('hub ids', () => {
  let dir: string;
  let served: Served[];
  const saved = { ...process.env };
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-hub-'));
    tmpFiles = path.join(dir, 'scratch');
    await fsp.mkdir(tmpFiles);
    const src = path.join(dir, 'src-model');
    await writeRandomCheckpoint(src, tinyRawConfig({ layers: 2 }), { seed: 3 });
    served = [];
    for (const f of (await fsp.readdir(src)).sort()) served.push({ path: f, bytes: await fsp.readFile(path.join(src, f)), lfs: f.endsWith('.safetensors') });
    served.push({ path: 'README.md', bytes: Buffer.from('# tiny\n'), lfs: false }, { path: 'pytorch_model.bin', bytes: Buffer.from('not wanted'), lfs: true });
  });
  afterEach(() => {
    for (const k of ['HF_HUB_CACHE', 'HF_HOME', 'HF_HUB_OFFLINE', 'HF_TOKEN', 'HF_ENDPOINT']) if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('downloads into the cache layout (blobs by etag, snapshot links, refs/main), sending HF_TOKEN; then every command finds it offline', async () => {
    const cache = path.join(dir, 'cache1');
    const seen: { url: string; headers: Record<string, string> }[] = [];
    const env = { HF_HUB_CACHE: cache, HF_TOKEN: 'hf_testtoken', HF_ENDPOINT: 'https://hub.example' };
    const events: string[] = [];
    const progress = { start: (total: number) => events.push(`start ${total}`), update: (d: number) => events.push(`update ${d}`), stop: () => events.push('stop') };
    const snap = await resolveModelSpec('org/tiny', { env, fetch: fakeHub(served, seen), progress });
    const repo = path.join(cache, 'models--org--tiny');
    expect(snap).toBe(path.join(repo, 'snapshots', COMMIT));
    expect((await fsp.readFile(path.join(repo, 'refs', 'main'), 'utf8')).trim()).toBe(COMMIT);
    const wanted = served.filter((f) => !['README.md', 'pytorch_model.bin'].includes(f.path));
    expect((await fsp.readdir(snap)).sort()).toEqual(wanted.map((f) => f.path).sort());
    for (const f of wanted) {
      const etag = f.lfs ? createHash('sha256').update(f.bytes).digest('hex') : execFileSync('git', ['hash-object', '--stdin'], { input: f.bytes, encoding: 'utf8' }).trim();
      expect(await fsp.readlink(path.join(snap, f.path))).toBe(path.join('..', '..', 'blobs', etag));
      expect(Buffer.compare(await fsp.readFile(path.join(snap, f.path)), f.bytes)).toBe(0);
    }
    expect(seen.every((s) => s.url.startsWith('https://hub.example/') && s.headers['Authorization'] === 'Bearer hf_testtoken')).toBe(true);
    expect(seen.some((s) => s.url.includes('pytorch_model.bin') && s.url.includes('/resolve/'))).toBe(false);
    const total = wanted.reduce((s, f) => s + f.bytes.length, 0);
    expect(events[0]).toBe(`start ${total}`);
    expect(events.slice(-2)).toEqual([`update ${total}`, 'stop']);

    // The same cache through the CLI, offline: by id, by id@commit, in inspect / expand / generate.
    process.env['HF_HUB_CACHE'] = cache;
    process.env['HF_HUB_OFFLINE'] = '1';
    const ins = await runCli(['inspect', 'org/tiny', '--json']);
    expect(ins.code).toBe(0);
    expect(JSON.parse(ins.stdout)).toMatchObject({ layers: 2 });
    expect((await runCli(['inspect', `org/tiny@${COMMIT}`, '--json'])).code).toBe(0);
    const out = path.join(dir, 'grown');
    const ex = await runCli(['expand', 'org/tiny', out, '--strategy', 'top', '--blocks', '1', '--json']);
    expect(ex.code).toBe(0);
    expect(JSON.parse(ex.stdout)).toMatchObject({ originalLayers: 2, layers: 3 });
    const gen = await runCli(['generate', '--model', 'org/tiny', '--prompt-ids', '1,2', '--max-new-tokens', '2', '--backend', 'tfjs', '--json']);
    expect(gen.code).toBe(0);
    expect(JSON.parse(gen.stdout).tokens).toHaveLength(2);
  });

  it('HF_HUB_OFFLINE=1 with a cache miss: one clear line, exit 1, no request', async () => {
    process.env['HF_HUB_CACHE'] = path.join(dir, 'empty-cache');
    process.env['HF_HUB_OFFLINE'] = '1';
    const r = await runCli(['inspect', 'meta-llama/Llama-2-7b-hf']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `llama-pro: meta-llama/Llama-2-7b-hf is not a local directory and not complete in the Hugging Face cache (${path.join(dir, 'empty-cache', 'models--meta-llama--Llama-2-7b-hf')} has no ref "main"); HF_HUB_OFFLINE is set, so nothing is downloaded: unset HF_HUB_OFFLINE, or fetch it where there is a network (huggingface-cli download meta-llama/Llama-2-7b-hf) and point HF_HUB_CACHE at that cache\n`,
    );
  });

  it('resumes an interrupted download with a Range request; a checksum mismatch keeps nothing', async () => {
    const cache = path.join(dir, 'cache2');
    const weights = served.find((f) => f.path === 'model.safetensors')!;
    const sha = createHash('sha256').update(weights.bytes).digest('hex');
    const blobs = path.join(cache, 'models--org--tiny', 'blobs');
    await fsp.mkdir(blobs, { recursive: true });
    const half = Math.floor(weights.bytes.length / 2);
    await fsp.writeFile(path.join(blobs, `${sha}.incomplete`), weights.bytes.subarray(0, half));
    const seen: { url: string; headers: Record<string, string> }[] = [];
    const snap = await downloadSnapshot(parseHubId('org/tiny')!, cache, { env: {}, fetch: fakeHub(served, seen) });
    expect(seen.find((s) => s.url.endsWith('/model.safetensors'))!.headers['Range']).toBe(`bytes=${half}-`);
    expect(Buffer.compare(await fsp.readFile(path.join(snap, 'model.safetensors')), weights.bytes)).toBe(0);

    const cache3 = path.join(dir, 'cache3');
    const err = await downloadSnapshot(parseHubId('org/tiny')!, cache3, { env: {}, fetch: fakeHub(served, [], 'model.safetensors') }).catch((e: unknown) => e as Error);
    expect((err as Error).message).toMatch(new RegExp(`^downloaded model.safetensors does not match the hub's checksum \\(${weights.bytes.length} bytes, sha256 [0-9a-f]{64}; expected ${weights.bytes.length} bytes, ${sha}\\); removed it, rerun to download again$`));
    expect((await fsp.readdir(path.join(cache3, 'models--org--tiny', 'blobs'))).filter((f) => f.startsWith(sha))).toEqual([]);
  });

  it('a mistyped local path that the hub does not know either: both readings in one line', async () => {
    const notFound = (async () => new Response('{"error":"Repository not found"}', { status: 404, headers: { 'content-type': 'application/json' } })) as typeof fetch;
    const err = await resolveModelSpec('runs/typo', { env: { HF_HUB_CACHE: path.join(dir, 'empty') }, fetch: notFound }).catch((e: unknown) => e as Error);
    expect((err as Error).message).toMatch(/^runs\/typo is not a local path, and as a Hugging Face hub id: cannot look up runs\/typo@main on https:\/\/huggingface\.co: .* \(no such repository or revision on the hub\)$/);
  });

  it('local paths and URLs pass through untouched', async () => {
    expect(await resolveModelSpec(dir, { env: { HF_HUB_OFFLINE: '1' } })).toBe(dir);
    expect(await resolveModelSpec('http://127.0.0.1:8000/v1', { env: { HF_HUB_OFFLINE: '1' } })).toBe('http://127.0.0.1:8000/v1');
    expect(await resolveModelSpec('./not/here', { env: { HF_HUB_OFFLINE: '1' } })).toBe('./not/here');
  });

  describe('hub ids inside train experiment and study files', () => {
    let cache: string;
    let snap: string;
    let grown: string;
    beforeAll(async () => {
      // A cache laid out by hand as huggingface_hub writes it: refs/main -> <commit>, snapshots/<commit>/ with
      // the model files, here an expanded model (train's engine jobs read its llama_pro.json).
      cache = path.join(dir, 'yaml-cache');
      const src = path.join(dir, 'yaml-src');
      await writeRandomCheckpoint(src, tinyRawConfig({ layers: 2 }), { seed: 4 });
      grown = path.join(dir, 'yaml-grown');
      expect((await runCli(['expand', src, grown, '--strategy', 'top', '--blocks', '1', '--json'])).code).toBe(0);
      await writeSentencePieceTokenizer(grown); // LLaMA-Factory jobs need a tokenizer
      const repo = path.join(cache, 'models--org--grown');
      snap = path.join(repo, 'snapshots', COMMIT);
      await fsp.mkdir(path.join(repo, 'refs'), { recursive: true });
      await fsp.writeFile(path.join(repo, 'refs', 'main'), COMMIT);
      await fsp.cp(grown, snap, { recursive: true });
      await fsp.writeFile(path.join(dir, 'corpus.txt'), 'some domain text\n');
    });

    it('train: model: org/name and org/name@<commit> in the experiment file resolve to the cached snapshot, offline', async () => {
      process.env['HF_HUB_CACHE'] = cache;
      process.env['HF_HUB_OFFLINE'] = '1';
      for (const id of ['org/grown', `org/grown@${COMMIT}`]) {
        const exp = path.join(dir, `exp-${id.length}.yaml`);
        await fsp.writeFile(exp, `model: ${id}\ndata:\n  path: corpus.txt\n`);
        const emit = path.join(dir, `lf-${id.length}`);
        const r = await runCli(['train', '--config', exp, '--engine', 'llamafactory', '--emit', emit, '--json']);
        expect(r.stderr).toBe(`llama-pro: ${id}: using the Hugging Face cache ${snap}\n`); // as for --model
        expect(r.code).toBe(0);
        expect(JSON.parse(r.stdout)).toMatchObject({ engine: 'llamafactory', newLayers: [2] });
        // LLaMA-Factory's model_name_or_path is the snapshot directory (engines/llamafactory.ts writes the model dir)
        expect(await fsp.readFile(path.join(emit, 'llamafactory.yaml'), 'utf8')).toContain(`model_name_or_path: ${snap}\n`);
      }
    });

    it('train: a relative model path in the file stays relative to the file; a cache miss gives the flag\'s error', async () => {
      process.env['HF_HUB_CACHE'] = path.join(dir, 'empty-cache');
      process.env['HF_HUB_OFFLINE'] = '1';
      // "yaml-grown" names the directory next to the file (resolved against the file, not the cwd)
      const local = path.join(dir, 'exp-local.yaml');
      await fsp.writeFile(local, `model: yaml-grown\ndata:\n  path: corpus.txt\n`);
      const r = await runCli(['train', '--config', local, '--engine', 'llamafactory', '--emit', path.join(dir, 'lf-local'), '--json']);
      expect(r.code).toBe(0);
      expect(await fsp.readFile(path.join(dir, 'lf-local', 'llamafactory.yaml'), 'utf8')).toContain(`model_name_or_path: ${grown}\n`);
      const miss = path.join(dir, 'exp-miss.yaml');
      await fsp.writeFile(miss, `model: meta-llama/Llama-2-7b-hf\ndata:\n  path: corpus.txt\n`);
      const flag = await runCli(['train', '--model', 'meta-llama/Llama-2-7b-hf', '--data', path.join(dir, 'corpus.txt'), '--engine', 'llamafactory', '--emit', path.join(dir, 'lf-miss')]);
      const file = await runCli(['train', '--config', miss, '--engine', 'llamafactory', '--emit', path.join(dir, 'lf-miss')]);
      expect(flag.code).toBe(1);
      expect(flag.stderr).toMatch(/^llama-pro: meta-llama\/Llama-2-7b-hf is not a local directory and not complete in the Hugging Face cache \(.*has no ref "main"\); HF_HUB_OFFLINE is set/);
      expect(file.code).toBe(1);
      expect(file.stderr).toBe(flag.stderr);
    });

    it('study: base: path: org/name in the study file resolves like --base (offline), a miss gives the same error', async () => {
      process.env['HF_HUB_CACHE'] = cache;
      process.env['HF_HUB_OFFLINE'] = '1';
      const y = path.join(dir, 'study.yaml');
      await fsp.writeFile(y, `base:\n  path: org/grown\n`);
      const emit = path.join(dir, 'study-jobs');
      const r = await runCli(['study', '--preset', 'paper-shape', '--config', y, '--out', path.join(dir, 'study-out'), '--engine', 'llamafactory', '--emit', emit, '--backend', 'tfjs', '--json']);
      expect(r.stderr).toContain(`llama-pro: org/grown: using the Hugging Face cache ${snap}\n`);
      expect(r.stderr).toContain(`base: ${snap} (given)`);
      expect(r.code).toBe(0);
      const jobs = (JSON.parse(r.stdout) as { jobs: string[] }).jobs;
      expect(jobs.length).toBeGreaterThan(0);
      expect(await fsp.readFile(path.join(emit, jobs[0]!, 'llamafactory.yaml'), 'utf8')).toContain('model_name_or_path: ');
      process.env['HF_HUB_CACHE'] = path.join(dir, 'empty-cache');
      const ym = path.join(dir, 'study-miss.yaml');
      await fsp.writeFile(ym, `base:\n  path: meta-llama/Llama-2-7b-hf\n`);
      const miss = await runCli(['study', '--preset', 'paper-shape', '--config', ym, '--out', path.join(dir, 'study-out2')]);
      const flag = await runCli(['study', '--preset', 'paper-shape', '--base', 'meta-llama/Llama-2-7b-hf', '--out', path.join(dir, 'study-out2')]);
      expect(flag.code).toBe(1);
      expect(flag.stderr).toMatch(/HF_HUB_OFFLINE is set, so nothing is downloaded/);
      expect(miss.code).toBe(1);
      expect(miss.stderr).toBe(flag.stderr);
    });
  });
});
