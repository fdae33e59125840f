/**
 * Docs and behaviour cannot part: docs/cli.md is generated from the commander definitions and must equal
 * the committed file, and every `llama-pro ...` example in the README and docs names a real command and
 * only flags that command defines (checked against the same definitions).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { buildProgram } from '../src/main';
import { cliReference, exampleProblems } from '../src/reference';

const ROOT = path.resolve(__dirname, '..', '..', '..');

describe('CLI reference', () => {
  it('docs/cli.md is what the commander definitions generate (regenerate: npm run docs:cli)', async () => {
    expect(await fsp.readFile(path.join(ROOT, 'docs', 'cli.md'), 'utf8')).toBe(cliReference());
  });

  it('lists every command and every option of each', () => {
    const md = cliReference();
    for (const c of buildProgram().commands) {
      expect(md).toContain(`\n## ${c.name()}\n`);
      for (const o of c.options) expect(md).toContain(o.flags.replace(/\|/g, '\\|'));
    }
  });

  it('every llama-pro example in the README and docs uses real commands and flags', async () => {
    const files = [path.join(ROOT, 'README.md'), ...(await fsp.readdir(path.join(ROOT, 'docs'))).filter((f) => f.endsWith('.md') && f !== 'cli.md').map((f) => path.join(ROOT, 'docs', f))];
    let examples = 0;
    for (const file of files) {
      const r = exampleProblems(await fsp.readFile(file, 'utf8'));
      expect({ file: path.relative(ROOT, file), problems: r.problems }).toEqual({ file: path.relative(ROOT, file), problems: [] });
      examples += r.examples;
    }
    expect(examples).toBeGreaterThan(12);
  });

  it('the example check catches unknown commands and flags', () => {
    const r = exampleProblems('Run `llama-pro expand a b --grups 4` then `llama-pro eval compare r1 --json` and `llama-pro frobnicate x`.\n  npm run llama-pro -- study --preset mini --outdir x\n');
    expect(r.problems).toEqual(['"llama-pro expand a b --grups 4": expand has no --grups', '"llama-pro eval compare r1 --json": eval compare has no --json', '"llama-pro frobnicate x": no command "frobnicate"', '"llama-pro study --preset mini --outdir x": study has no --outdir']);
  });
});
