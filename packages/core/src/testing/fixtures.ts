/**
 * Locating the shared fixtures (real model, golden logits, datasets). Tests read them in place.
 * `LLAMA_PRO_FIXTURES` overrides the location (default: `../shared` next to the repository root).
 * When they are missing, tests skip with a message, unless `LLAMA_PRO_REQUIRE_FIXTURES=1` (set by
 * `.ci/run`), which turns the skip into a failure.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';

function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 8; i++) {
    if (existsSync(path.join(dir, 'nx.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

export function fixturesDir(): string {
  return path.resolve(process.env['LLAMA_PRO_FIXTURES'] ?? path.join(repoRoot(), '..', 'shared'));
}

export function fixturePath(...parts: string[]): string {
  return path.join(fixturesDir(), ...parts);
}

export const STORIES260K_BIN = ['models', 'stories260K', 'stories260K.bin'];
export const STORIES260K_GOLDEN = ['golden', 'stories260K'];

/**
 * Returns true when every fixture exists. When one is missing: throws if fixtures are required,
 * else logs why the dependent tests skip and returns false.
 */
export function haveFixtures(...relPaths: string[][]): boolean {
  const missing = relPaths.map((p) => fixturePath(...p)).filter((p) => !existsSync(p));
  if (missing.length === 0) return true;
  const msg = `fixtures missing: ${missing.join(', ')} (set LLAMA_PRO_FIXTURES to the shared fixtures directory)`;
  if (process.env['LLAMA_PRO_REQUIRE_FIXTURES'] === '1') throw new Error(msg + '; LLAMA_PRO_REQUIRE_FIXTURES=1 makes this a failure');
  console.warn(`skipping: ${msg}`);
  return false;
}

/** `describe` when the fixtures exist, `describe.skip` (with a message) otherwise. */
export function describeWithFixtures(name: string, relPaths: string[][], fn: () => void): void {
  const d = (globalThis as unknown as { describe: { (n: string, f: () => void): void; skip: (n: string, f: () => void) => void } }).describe;
  (haveFixtures(...relPaths) ? d : d.skip)(name, fn);
}

/** Relative L2 error ||a - b|| / ||b|| (the tolerance measure used against golden logits). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relL2: lengths differ (${a.length} vs ${b.length})`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
