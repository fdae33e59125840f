jest.setTimeout(180_000);
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { container as rootContainer } from 'tsyringe';
import { TOKENS, resolveRegistry } from '@llama-pro/core';
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { ensureDataset, DATASET_SOURCES } from '../src/datasets/download';
import { DatasetError } from '../src/errors';
import { compareRuns, markdownTable, readRun, writeRun, type RunRecord } from '../src/results';
import { evalPlugin } from '../src/plugin';
import type { LanguageModelProvider } from '../src/lm/providers';
import type { Evaluator, TaskResult } from '../src/evaluator';
import { loadMbpp, mbppJob, mbppPrompt } from '../src/tasks/mbpp';
import { PythonSandbox, type CodeSandbox } from '../src/sandbox/python-sandbox';
import { evaluateFunctionalCorrectness } from '../src/tasks/humaneval';

const created: string[] = [];
const tmpDir = (p: string): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), p));
  created.push(d);
  return d;
};
afterAll(() => {
  for (const d of created) fs.rmSync(d, { recursive: true, force: true });
});

describeWithFixtures('dataset download + cache + sha256 against a local server', [['datasets', 'gsm8k', 'test.jsonl']], () => {
  let server: http.Server;
  let base = '';
  let corrupt = false;
  let hits = 0;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hits++;
      const name = path.basename(req.url ?? '');
      const file = fixturePath('datasets', 'gsm8k', name);
      if (!fs.existsSync(file)) {
        res.statusCode = 404;
        res.end();
        return;
      }
      const data = fs.readFileSync(file);
      if (corrupt) data[10] = data[10]! ^ 1;
      res.end(data);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  const mirror = (u: string): string => base + '/' + path.basename(u);

  it('downloads, verifies and caches; a second call does not download again', async () => {
    const cache = tmpDir('lp-cache-');
    expect(await ensureDataset('gsm8k', { cacheDir: cache, mirror })).toBe(cache);
    expect(fs.readdirSync(path.join(cache, 'gsm8k')).sort()).toEqual(['test.jsonl', 'train.jsonl']);
    const before = hits;
    await ensureDataset('gsm8k', { cacheDir: cache, mirror });
    expect(hits).toBe(before);
    // A local data dir with the files wins without any download.
    expect(await ensureDataset('gsm8k', { dataDir: fixturePath('datasets'), cacheDir: tmpDir('lp-cache-'), mirror: () => 'http://127.0.0.1:9/x' })).toBe(fixturePath('datasets'));
  });
  it('refuses a download whose sha256 does not match, leaving nothing in the cache', async () => {
    corrupt = true;
    const cache = tmpDir('lp-cache-');
    try {
      await expect(ensureDataset('gsm8k', { cacheDir: cache, mirror })).rejects.toThrow(/sha256 .* expected 3730d312/);
    } finally {
      corrupt = false;
    }
    expect(fs.readdirSync(path.join(cache, 'gsm8k'))).toEqual([]);
  });
  it('offline: a clear typed error naming the file and the --data-dir fix', async () => {
    const err = await ensureDataset('gsm8k', { cacheDir: tmpDir('lp-cache-'), mirror: () => 'http://127.0.0.1:9/test.jsonl' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as DatasetError).code).toBe('DATASET_DOWNLOAD');
    expect((err as Error).message).toMatch(/cannot download .*offline.*--data-dir/);
    await expect(ensureDataset('gsm8k', { cacheDir: tmpDir('lp-cache-'), download: false })).rejects.toThrow(/downloads are off/);
    await expect(ensureDataset('mmlu', { dataDir: tmpDir('lp-empty-'), cacheDir: tmpDir('lp-cache-'), download: false })).rejects.toThrow(/downloads are off/);
    await expect(ensureDataset('mmlu', { cacheDir: tmpDir('lp-cache-'), mirror: () => 'http://127.0.0.1:9/data.tar' })).rejects.toThrow(/cannot download .*data\.tar/);
  });
  it('offline mbpp asks for mbpp.jsonl, never HumanEval (issue 18 item 8)', async () => {
    const err = (await ensureDataset('mbpp', { dataDir: tmpDir('lp-empty-'), cacheDir: tmpDir('lp-cache-'), download: false }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(DatasetError);
    expect(err.message).toMatch(/mbpp\/mbpp\.jsonl is neither in/);
    expect(err.message).not.toMatch(/HumanEval/i);
    // mbpp.jsonl next to HumanEval (the shared data layout) is found without HumanEval.jsonl.gz being there.
    const legacy = tmpDir('lp-mbpp-');
    fs.mkdirSync(path.join(legacy, 'humaneval'));
    fs.writeFileSync(path.join(legacy, 'humaneval', 'mbpp.jsonl'), '');
    expect(await ensureDataset('mbpp', { dataDir: legacy, cacheDir: tmpDir('lp-cache-'), download: false })).toBe(legacy);
    const own = tmpDir('lp-mbpp-');
    fs.mkdirSync(path.join(own, 'mbpp'));
    fs.writeFileSync(path.join(own, 'mbpp', 'mbpp.jsonl'), '');
    expect(await ensureDataset('mbpp', { dataDir: own, cacheDir: tmpDir('lp-cache-'), download: false })).toBe(own);
    await expect(ensureDataset('wikitext', { dataDir: tmpDir('lp-empty-') })).rejects.toThrow(/no download source/);
    expect(DATASET_SOURCES['humaneval']![0]!.sha256).toBe('b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef');
  });
});

/** A minimal ustar writer for the test archive. */
function tarOf(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, data] of entries) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0' + '00', 257, 'latin1');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    parts.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

describeWithFixtures('MMLU download: data.tar extracted and verified file by file', [['datasets', 'mmlu', 'test']], () => {
  it('extracts data/{dev,val,test} from the archive, verifies every sha256, rejects a tampered archive', async () => {
    const root = fixturePath('datasets', 'mmlu');
    const entries: [string, Buffer][] = [['data/README.txt', Buffer.from('readme')]];
    for (const split of ['dev', 'val', 'test']) for (const f of fs.readdirSync(path.join(root, split)).sort()) entries.push([`data/${split}/${f}`, fs.readFileSync(path.join(root, split, f))]);
    let archive = tarOf(entries);
    const server = http.createServer((_req, res) => res.end(archive));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/data.tar`;
    try {
      const cache = tmpDir('lp-cache-');
      expect(await ensureDataset('mmlu', { cacheDir: cache, mirror: () => url })).toBe(cache);
      expect(fs.readFileSync(path.join(cache, 'mmlu', 'test', 'virology_test.csv'))).toEqual(fs.readFileSync(path.join(root, 'test', 'virology_test.csv')));
      expect(fs.existsSync(path.join(cache, 'mmlu', 'README.txt'))).toBe(false);
      const tampered = entries.map(([n, d]): [string, Buffer] => [n, n.endsWith('anatomy_dev.csv') ? Buffer.concat([d, Buffer.from(' ')]) : d]);
      archive = tarOf(tampered);
      const cache2 = tmpDir('lp-cache-');
      await expect(ensureDataset('mmlu', { cacheDir: cache2, mirror: () => url })).rejects.toThrow(/dev\/anatomy_dev.csv .* has sha256 .* expected 0985685c/);
      expect(fs.existsSync(path.join(cache2, 'mmlu', 'dev'))).toBe(false);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('results: run JSON, per-sample JSONL, markdown, compare', () => {
  const task = (acc: number): TaskResult => ({
    task: 'mmlu',
    metrics: { acc, acc_macro: acc - 0.01 },
    config: { num_fewshot: 5 },
    dataset: { name: 'mmlu', dir: '/d', files: [], sha256: 'x' },
    samples: [{ doc_id: 0, correct: true }, { doc_id: 1, correct: false }],
  });
  const meta = (name: string): Omit<RunRecord, 'tasks'> => ({
    format: 'llama-pro-eval',
    version: 1,
    name,
    created: '2026-01-01T00:00:00.000Z',
    model: { kind: 'local', source: '/m', sha256: 'ab'.repeat(32), backend: 'onnx', device: 'onnx:cpu', dtype: 'F32' },
    config: { tasks: ['mmlu'], num_fewshot: 5, limit: null, add_bos: true, tokenizer: 'tokenizer.json' },
    versions: {},
  });
  it('writes and reads a run; compare shows deltas against the first run', async () => {
    const dir = tmpDir('lp-run-');
    await writeRun(path.join(dir, 'base'), meta('base'), [{ result: task(0.4), durationS: 1 }]);
    await writeRun(path.join(dir, 'grown'), meta('grown'), [{ result: task(0.425), durationS: 1 }]);
    const base = await readRun(path.join(dir, 'base'));
    const grown = await readRun(path.join(dir, 'grown', 'results.json'));
    expect(base.tasks['mmlu']!.samples_file).toBe('samples_mmlu.jsonl');
    expect(fs.readFileSync(path.join(dir, 'base', 'samples_mmlu.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))).toEqual(task(0.4).samples);
    expect(markdownTable(base)).toContain('| mmlu | 5 | acc | 0.4000 |');
    const t = compareRuns([base, grown]);
    expect(t).toContain('| task | metric | base (base) | grown |');
    expect(t).toContain('| mmlu | acc | 0.4000 | 0.4250 (+0.0250) |');
    expect(t).toContain('| mmlu | acc_macro | 0.3900 | 0.4150 (+0.0250) |');
    await expect(readRun(path.join(dir, 'nope.json'))).rejects.toThrow(/cannot read run/);
  });
});

describe('evalPlugin', () => {
  it('registers the evaluators, the python sandbox and the providers', async () => {
    const c = rootContainer.createChildContainer();
    await evalPlugin.register(c);
    const ev = resolveRegistry<Evaluator>(c, TOKENS.Evaluator, 'evaluator');
    expect(ev.names()).toEqual(['gsm8k', 'gsm8k_cot', 'humaneval', 'mbpp', 'mmlu', 'perplexity']);
    expect(resolveRegistry<CodeSandbox>(c, TOKENS.CodeSandbox, 'code sandbox').names()).toEqual(['python']);
    expect(() => ev.get('hellaswag')).toThrow(/unknown evaluator "hellaswag"; known: gsm8k/);
    const providers = resolveRegistry<LanguageModelProvider>(c, TOKENS.LanguageModelProvider, 'language-model provider');
    expect(providers.names()).toEqual(['local', 'openai']);
    expect(providers.list().filter((p) => p.matches('http://localhost:8000/v1')).map((p) => p.name)).toEqual(['openai']);
    expect(providers.list().filter((p) => p.matches('out/stories260K')).map((p) => p.name)).toEqual(['local']);
  });
});

describeWithFixtures('MBPP', [['datasets', 'humaneval', 'mbpp.jsonl']], () => {
  it('test split 11..510, 3-shot prompt with tasks 2,3,4, reference code passes its asserts in the sandbox', async () => {
    const { test, prompt } = await loadMbpp(fixturePath('datasets', 'humaneval'));
    expect(test).toHaveLength(500);
    expect(test[0]!.task_id).toBe(11);
    const shots = [2, 3, 4].map((id) => prompt.find((d) => d.task_id === id)!);
    const p = mbppPrompt(test[0]!, shots);
    expect(p.startsWith('You are an expert Python programmer, and here is your task: ' + shots[0]!.text + ' Your code should pass these tests:\n\n')).toBe(true);
    expect(p.endsWith(test[0]!.test_list.map((t) => t + '\n').join('') + '[BEGIN]\n')).toBe(true);
    expect(p.split('[DONE]')).toHaveLength(4);
    const docs = test.slice(0, 8);
    const problems = docs.map((d) => ({ task_id: `MBPP/${d.task_id}`, prompt: '', canonical_solution: d.code, test: '', entry_point: '' }));
    const byId = new Map(docs.map((d) => [`MBPP/${d.task_id}`, d]));
    const run = (completion: (i: number) => string) =>
      evaluateFunctionalCorrectness(problems, problems.map((p, i) => ({ task_id: p.task_id, completion: completion(i) })), new PythonSandbox(), { ks: [1], program: (p, c) => mbppJob(byId.get(p.task_id)!, c) });
    expect((await run((i) => docs[i]!.code)).metrics).toEqual({ 'pass@1': 1 });
    expect((await run(() => 'pass')).metrics).toEqual({ 'pass@1': 0 });
  });
});
