/**
 * Issue 16 ([isolation]) "How it is checked": the hostile-samples suite, as this user and — when the tests run as
 * root — again as the unprivileged uid 65534 (setpriv), because the attacks in the issue differed by uid. For
 * every run: 0 files outside the private tmp, 0 secrets from the environment in any output, 0 connections to a
 * loopback listener the harness opens, 0 surviving processes, 0 forged passes, and the harness finishes.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { fixturePath } from '@llama-pro/core/testing';
import { runHostileSuite, type HostileReport } from './support/hostile';

jest.setTimeout(300_000);

const dataset = fixturePath('datasets', 'humaneval', 'HumanEval.jsonl.gz');
const isRoot = process.getuid?.() === 0;

function expectContained(r: HostileReport): void {
  expect(r.controls).toEqual({ files: true, procs: true, connections: true });
  expect(r.results.length).toBeGreaterThanOrEqual(14);
  expect(r.results.filter((x) => x.passed)).toEqual([]);
  expect(r.escapedFiles).toEqual([]);
  expect(r.secretLeaks).toEqual([]);
  expect(r.connections).toBe(0);
  expect(r.survivors).toEqual([]);
  // The reply-channel forgery may set its own call's output (the cell shares the interpreter), never another call's.
  expect(r.replyChannel[0]).toBe('');
  expect(['second\n', 'FORGED']).toContain(r.replyChannel[1]);
  expect(r.replyChannel[2]).toBe('third 42\n');
  expect(r.replyChannel[3]).toBe('fourth\n');
  expect(r.sessionOutputs.join('\n')).not.toMatch(/FORGED/);
}

describe('hostile samples (issue 16)', () => {
  it(`are contained as uid ${process.getuid?.()}`, async () => {
    const secret = `SECRET_TOKEN-${randomBytes(8).toString('hex')}`;
    process.env['SECRET_TOKEN'] = secret;
    try {
      const r = await runHostileSuite(secret, dataset);
      expectContained(r);
    } finally {
      delete process.env['SECRET_TOKEN'];
    }
  });

  (isRoot ? it : it.skip)('are contained as the unprivileged uid 65534 (run from root via setpriv)', () => {
    const secret = `SECRET_TOKEN-${randomBytes(8).toString('hex')}`;
    const root = path.resolve(__dirname, '../../..');
    const r = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-r', path.join(__dirname, 'support/ts-register.js'), path.join(__dirname, 'support/hostile-main.ts'), dataset],
      { cwd: root, env: { PATH: process.env['PATH'], SECRET_TOKEN: secret, HOME: '/tmp' }, encoding: 'utf8', timeout: 280_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as HostileReport;
    expect(report.uid).toBe(65534);
    expectContained(report);
  });
});
