/**
 * Training through the CLI on the real backend: stories260K (llama2.c) converted, expanded (interleaved,
 * 5 → 10 blocks) and trained on GSM8K train solutions fed as byte tokens (ids 3..258). The paper's claim
 * in miniature: every frozen tensor byte-identical, every new-block tensor changed, domain validation
 * loss falls; the loss on text sampled from the base model itself (the "general" sample) is reported
 * next to it. full / layers / lora run through the same command on the same data.
 */
jest.setTimeout(300_000);
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c, generate } from '@llama-pro/core';
import { STORIES260K_BIN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { readExpansionManifest } from '@llama-pro/expand';
import { tfjsBackend } from '@llama-pro/backend-tfjs';
import { listCheckpoints, readMetrics } from '@llama-pro/train';
import { runCli } from './run-cli';

const GSM8K_TRAIN = ['datasets', 'gsm8k', 'train.jsonl'];

async function readAll(dir: string): Promise<Map<string, Buffer>> {
  const ck = await HfCheckpoint.open(dir);
  try {
    const out = new Map<string, Buffer>();
    for (const n of ck.tensorNames()) out.set(n, await ck.read(n));
    return out;
  } finally {
    await ck.close();
  }
}

describeWithFixtures('train stories260K through the CLI (tfjs)', [STORIES260K_BIN, GSM8K_TRAIN], () => {
  let dir: string;
  let base: string;
  let expanded: string;
  let corpus: string;
  let general: string;
  let expandedTensors: Map<string, Buffer>;
  const common = () => ['--data', corpus, '--field', 'answer', '--seq-len', '64', '--batch-size', '4', '--backend', 'tfjs', '--json', '--byte-tokens'];

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-train-'));
    base = path.join(dir, 'base');
    expanded = path.join(dir, 'expanded');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), base);
    const r = await runCli(['expand', base, expanded, '--strategy', 'interleaved', '--groups', '5', '--json']);
    expect(r.code).toBe(0);
    expandedTensors = await readAll(expanded);
    // Domain: the first 600 GSM8K train solutions (real data), one JSONL record per document.
    const lines = (await fsp.readFile(fixturePath(...GSM8K_TRAIN), 'utf8')).split('\n').filter(Boolean).slice(0, 600);
    corpus = path.join(dir, 'gsm8k.jsonl');
    await fsp.writeFile(corpus, lines.join('\n') + '\n');
    // General: 16 samples of up to 63 tokens from the base model itself (temperature 1), as token ids with EOS between.
    const ck = await HfCheckpoint.open(base);
    const model = await tfjsBackend.load(ck);
    const samples = await generate(model, Array.from({ length: 16 }, () => [1]), { maxNewTokens: 63, temperature: 1, seed: 0, eosTokenIds: [2] });
    await model.dispose();
    await ck.close();
    const ids = samples.flatMap((s) => [...s.tokens, 2]);
    general = path.join(dir, 'general.i32');
    await fsp.writeFile(general, Buffer.from(Int32Array.from(ids).buffer));
  });
  afterAll(async () => {
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('new-blocks: frozen tensors byte-identical, new blocks changed, domain loss falls, general loss reported', async () => {
    const out = path.join(dir, 'run-new-blocks');
    const r = await runCli(['train', '--model', expanded, '--out', out, ...common(), '--policy', 'new-blocks', '--steps', '30', '--lr', '2e-4', '--eval-interval', '10', '--general', general]);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ finishReason: 'completed', step: 30, policy: 'new-blocks', trainableTensors: 45 });
    const manifest = await readExpansionManifest(expanded);
    const trainable = new Set(manifest.trainableTensors);
    const trained = await readAll(s.exportDir);
    expect([...trained.keys()]).toEqual([...expandedTensors.keys()]);
    for (const [name, bytes] of expandedTensors) expect({ name, same: trained.get(name)!.equals(bytes) }).toEqual({ name, same: !trainable.has(name) });
    expect(s.finalValLoss).toBeLessThan(s.initialValLoss);
    expect(Number.isFinite(s.initialGeneralLoss) && Number.isFinite(s.finalGeneralLoss)).toBe(true);
    console.log(
      `stories260K + 5 new blocks, 30 steps (lr 2e-4) on GSM8K bytes: domain val loss ${s.initialValLoss.toFixed(4)} -> ${s.finalValLoss.toFixed(4)}; ` +
        `general (base-model samples) loss ${s.initialGeneralLoss.toFixed(4)} -> ${s.finalGeneralLoss.toFixed(4)}`,
    );
    const metrics = await readMetrics(out);
    expect(metrics.filter((m) => m.general_loss !== undefined).map((m) => m.step)).toEqual([0, 10, 20, 30]);
    // The export carries the expansion manifest and the training manifest.
    expect((await readExpansionManifest(s.exportDir)).trainableTensors).toEqual(manifest.trainableTensors);
    const tm = JSON.parse(await fsp.readFile(path.join(s.exportDir, 'llama_pro_train.json'), 'utf8'));
    expect(tm).toMatchObject({ format: 'llama-pro.training-run', backend: 'tfjs', policy: { name: 'new-blocks' }, result: { step: 30 } });
  });

  it.each([
    ['full', [], (_n: string) => true],
    ['layers', ['--layers', 'top:2'], (n: string) => /^model\.layers\.(8|9)\./.test(n)],
    ['lora', ['--lora-rank', '4', '--lora-alpha', '8', '--lora-targets', 'self_attn.q_proj,self_attn.v_proj'], (n: string) => /self_attn\.(q|v)_proj\.weight$/.test(n)],
  ])('%s runs through the same command and changes exactly its tensors', async (policy, flags, changes) => {
    const out = path.join(dir, `run-${policy}`);
    const r = await runCli(['train', '--model', expanded, '--out', out, ...common(), '--policy', policy, ...flags, '--steps', '3', '--lr', '1e-2', '--eval-interval', '0']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ finishReason: 'completed', step: 3, policy });
    const trained = await readAll(s.exportDir);
    for (const [name, bytes] of expandedTensors) {
      // Tensors outside the policy must stay byte-identical (some inside may legitimately get zero gradient).
      if (!changes(name)) expect({ name, same: trained.get(name)!.equals(bytes) }).toEqual({ name, same: true });
    }
    const changed = [...expandedTensors].filter(([n, b]) => !trained.get(n)!.equals(b)).map(([n]) => n);
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every(changes)).toBe(true);
  });

  it('--config YAML (paths relative to the file) with flags overriding it', async () => {
    const cfgDir = path.join(dir, 'cfg');
    await fsp.mkdir(cfgDir, { recursive: true });
    await fsp.writeFile(
      path.join(cfgDir, 'exp.yaml'),
      ['model: ../expanded', 'out: ../run-config', 'steps: 2', 'seqLen: 64', 'batchSize: 2', 'policy:', '  name: layers', '  layers: { bottom: 1 }', 'data:', '  path: ../gsm8k.jsonl', '  field: answer', 'eval: { interval: 0 }', ''].join('\n'),
    );
    const r = await runCli(['train', '--config', path.join(cfgDir, 'exp.yaml'), '--steps', '3', '--backend', 'tfjs', '--json', '--byte-tokens']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ finishReason: 'completed', step: 3, policy: 'layers', runDir: path.join(dir, 'run-config') });
    const saved = JSON.parse(await fsp.readFile(path.join(dir, 'run-config', 'experiment.json'), 'utf8'));
    expect(saved).toMatchObject({ steps: 3, batchSize: 2, policy: { name: 'layers', layers: { bottom: 1 } } });
    const bad = await runCli(['train', '--config', path.join(cfgDir, 'exp.yaml'), '--policy', 'nope']);
    expect(bad.code).toBe(2); // usage class (README "Exit codes"): an unknown name on the command line
    expect(bad.stderr).toMatch(/unknown freeze policy "nope"; known: full, layers, lora, new-blocks/);
  });

  it('SIGINT saves a checkpoint and exits cleanly; --resume completes the run', async () => {
    const out = path.join(dir, 'run-sigint');
    const args = ['train', '--model', expanded, '--out', out, ...common(), '--steps', '12', '--eval-interval', '0', '--checkpoint-interval', '0'];
    // A real process (the TypeScript sources through a transpile-on-require hook) that receives a real SIGINT.
    const child = spawn(process.execPath, ['-r', path.join(__dirname, '../../train/test/support/ts-register.js'), path.join(__dirname, '../src/bin.ts'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => {
      stderr += c;
      const done = [...stderr.matchAll(/"event":"progress","done":(\d+)/g)].map((m) => Number(m[1]));
      if (!sent && done.some((d) => d >= 2)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(sent).toBe(true);
    expect(code).toBe(130); // interrupted class, also after the clean stop (checkpoint saved, summary printed)
    const s1 = JSON.parse(stdout);
    expect(s1.finishReason).toBe('interrupted');
    expect(s1.step).toBeGreaterThanOrEqual(2);
    expect(s1.step).toBeLessThan(12);
    expect(s1.exportDir).toBeNull();
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([s1.step]);
    const r = await runCli([...args, '--resume']);
    expect(r.code).toBe(0);
    const s2 = JSON.parse(r.stdout);
    expect(s2).toMatchObject({ finishReason: 'completed', step: 12, resumedFrom: s1.step });
    // On the real backend too, interrupted + resumed equals straight: bitwise tensors, identical loss log.
    const straightOut = path.join(dir, 'run-straight');
    const st = await runCli(['train', '--model', expanded, '--out', straightOut, ...args.slice(5)]);
    expect(st.code).toBe(0);
    const a = await readAll(JSON.parse(st.stdout).exportDir);
    const b = await readAll(s2.exportDir);
    for (const [name, bytes] of a) expect({ name, same: b.get(name)!.equals(bytes) }).toEqual({ name, same: true });
    const losses = async (d: string) => (await readMetrics(d)).map((m) => [m.step, m.loss, m.lr, m.grad_norm, m.val_loss]);
    expect(await losses(out)).toEqual(await losses(straightOut));
  });

  it('new-blocks on a model without an expansion manifest is a usage error naming the fix', async () => {
    const r = await runCli(['train', '--model', base, '--out', path.join(dir, 'run-bad'), ...common(), '--steps', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/llama-pro expand/);
    // Refused before anything was loaded or tokenized (issue 18 item 7): no run directory, no log lines.
    expect(existsSync(path.join(dir, 'run-bad'))).toBe(false);
    expect(r.stderr).not.toMatch(/tokenized|llama-pro train: /);
  });
});
