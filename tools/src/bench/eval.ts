/**
 * Cost of the code sandbox: the first BENCH_PROGRAMS (default 48) HumanEval canonical solutions judged by
 * `PythonSandbox.runAll` (bubblewrap namespaces + rlimits for the completion, the test in a checker outside the
 * sandbox, one sandbox started ahead per worker) versus the same whole programs run by bare `python3 -c` children
 * with the same number of parallel workers, measured in the same run. Prints programs/s of both and the
 * sandbox/bare time ratio.
 *
 *   npm run bench:eval        (env: BENCH_PROGRAMS, BENCH_WORKERS (default 2), LLAMA_PRO_FIXTURES)
 */
import { spawn } from 'node:child_process';
import { fixturePath } from '@llama-pro/core/testing';
import { PythonSandbox, humanEvalJob, humanEvalProgram, loadHumanEval } from '@llama-pro/eval';

const N = Number(process.env['BENCH_PROGRAMS'] ?? 48);
const W = Number(process.env['BENCH_WORKERS'] ?? 2);

function bare(python: string, program: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(python, ['-c', program], { stdio: ['ignore', 'ignore', 'ignore'] });
    child.on('close', (code) => resolve(code === 0));
  });
}

async function pool<T>(items: readonly T[], workers: number, fn: (x: T) => Promise<boolean>): Promise<number> {
  let next = 0;
  let passed = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < items.length) if (await fn(items[next++]!)) passed++;
    }),
  );
  return passed;
}

async function main(): Promise<void> {
  const { problems } = await loadHumanEval(fixturePath('datasets', 'humaneval'));
  const programs = problems.slice(0, N).map((p) => humanEvalProgram(p, p.canonical_solution));
  const jobs = problems.slice(0, N).map((p) => humanEvalJob(p, p.canonical_solution));
  const sandbox = new PythonSandbox();
  const info = await sandbox.describe();
  // Warm-up both paths (page cache, interpreter).
  await sandbox.runAll(jobs.slice(0, 2), { workers: W });
  await pool(programs.slice(0, 2), W, (p) => bare(info.python, p));

  let t = process.hrtime.bigint();
  const passedBare = await pool(programs, W, (p) => bare(info.python, p));
  const bareS = Number(process.hrtime.bigint() - t) / 1e9;
  t = process.hrtime.bigint();
  const res = await sandbox.runAll(jobs, { workers: W });
  const sandS = Number(process.hrtime.bigint() - t) / 1e9;
  const passedSand = res.filter((r) => r.passed).length;

  console.log(`python ${info.python} ${info.pythonVersion}; isolation=${info.isolation} (${info.namespaces.join(',')}); ${programs.length} programs, ${W} workers`);
  console.log(`bare python3 -c : ${bareS.toFixed(2)} s  (${(programs.length / bareS).toFixed(1)} programs/s, ${passedBare} exit 0)`);
  console.log(`sandbox         : ${sandS.toFixed(2)} s  (${(programs.length / sandS).toFixed(1)} programs/s, ${passedSand} passed)`);
  console.log(`ratio sandbox/bare: ${(sandS / bareS).toFixed(2)}x`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
