/** `eval --python` / `--unsafe-no-sandbox` wiring (issue 16 item 1, issue 20 D4). Benign canonical samples only. */
jest.setTimeout(300_000);
import { promises as fsp, symlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeWithFixtures, fixturePath } from '@llama-pro/core/testing';
import { loadHumanEval, type RunRecord } from '@llama-pro/eval';
import { runCli } from './run-cli';

const DATA = fixturePath('datasets');

describeWithFixtures('llama-pro eval sandbox flags', [['datasets', 'humaneval', 'HumanEval.jsonl.gz']], () => {
  let tmp: string;
  let samples: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-sbx-'));
    const { problems } = await loadHumanEval(path.join(DATA, 'humaneval'));
    samples = path.join(tmp, 'samples.jsonl');
    await fsp.writeFile(samples, problems.slice(0, 2).map((p) => JSON.stringify({ task_id: p.task_id, completion: p.canonical_solution })).join('\n') + '\n');
  });
  afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));
  const sandboxOf = async (name: string): Promise<Record<string, unknown>> =>
    (JSON.parse(await fsp.readFile(path.join(tmp, name, 'results.json'), 'utf8')) as RunRecord).tasks['humaneval']!.config['sandbox'] as Record<string, unknown>;

  it('--python selects the interpreter of the sandbox', async () => {
    const r = await runCli(['eval', '--task', 'humaneval', '--samples', samples, '--limit', '2', '--data-dir', DATA, '--out', tmp, '--name', 'py', '--python', '/usr/bin/python3.11']);
    expect(r.stderr).not.toMatch(/llama-pro:/);
    expect(r.code).toBe(0);
    expect(await sandboxOf('py')).toMatchObject({ python: '/usr/bin/python3.11', isolation: 'bwrap' });
  });

  it('without bubblewrap: refused with the reason, run unisolated only with --unsafe-no-sandbox', async () => {
    const bin = path.join(tmp, 'bin');
    await fsp.mkdir(bin);
    symlinkSync('/usr/bin/python3', path.join(bin, 'python3'));
    const old = process.env['PATH'];
    process.env['PATH'] = bin;
    try {
      const args = ['eval', '--task', 'humaneval', '--samples', samples, '--limit', '2', '--data-dir', DATA, '--out', tmp, '--python', path.join(bin, 'python3')];
      const refused = await runCli([...args, '--name', 'refused']);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/refusing to run untrusted code: bubblewrap \(bwrap\) is not installed.*--unsafe-no-sandbox/);
      const unsafe = await runCli([...args, '--name', 'unsafe', '--unsafe-no-sandbox']);
      expect(unsafe.code).toBe(0);
      expect(await sandboxOf('unsafe')).toMatchObject({ isolation: 'none' });
    } finally {
      process.env['PATH'] = old;
    }
  });
});
