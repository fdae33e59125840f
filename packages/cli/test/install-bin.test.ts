/**
 * The README's three ways to run the CLI after `npm ci && npm run build` on a fresh clone:
 * `npx llama-pro`, `npm run llama-pro --` and `node packages/cli/dist/bin.js`. `npx` must resolve the
 * workspace's own bin link (node_modules/.bin) and never the registry (where `llama-pro` is a 404).
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const run = promisify(execFile);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const PKG = require('../package.json') as { version: string; bin: Record<string, string>; files: string[] };

describe('llama-pro on PATH after install', () => {
  it('the bin is a committed file (npm links it at install time, before dist/ exists)', async () => {
    const target = PKG.bin['llama-pro']!;
    expect(target.startsWith('./dist/')).toBe(false);
    expect(PKG.files).toContain(path.dirname(target).replace(/^\.\//, ''));
    const file = path.join(__dirname, '..', target);
    expect((await fsp.readFile(file, 'utf8')).startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect((await fsp.stat(file)).mode & 0o111).not.toBe(0);
    const ls = await run('git', ['ls-files', '--error-unmatch', path.relative(ROOT, file)], { cwd: ROOT });
    expect(ls.stdout.trim()).toBe(path.relative(ROOT, file));
  });

  it('npm ci linked it into node_modules/.bin', async () => {
    const link = path.join(ROOT, 'node_modules', '.bin', 'llama-pro');
    expect(await fsp.realpath(link)).toBe(await fsp.realpath(path.join(__dirname, '..', PKG.bin['llama-pro']!)));
  });

  it.each([
    ['npx', ['--no-install', 'llama-pro', '--version']],
    ['npm', ['run', '--silent', 'llama-pro', '--', '--version']],
    [process.execPath, ['packages/cli/dist/bin.js', '--version']],
  ])('%s %s prints the version', async (cmd, args) => {
    const r = await run(cmd, args, { cwd: ROOT, env: { ...process.env, npm_config_offline: 'true' } });
    expect(r.stdout.trim()).toBe(PKG.version);
  }, 60_000);

  it('the README names all three forms', async () => {
    const readme = await fsp.readFile(path.join(ROOT, 'README.md'), 'utf8');
    for (const form of ['npx llama-pro <command>', 'npm run llama-pro -- <command>', 'node packages/cli/dist/bin.js <command>']) expect(readme).toContain(form);
  });
});
