import type { Command } from 'commander';
import { LlamaProError } from '@llama-pro/core';
import { importRun } from '@llama-pro/engines';

export function registerImportRun(program: Command): void {
  program
    .command('import-run')
    .description('Check a checkpoint trained by an external engine against its expanded base (frozen tensors byte-identical) and record the run in its manifest')
    .argument('<run-dir>', 'the engine output directory (a Hugging Face model directory)')
    .requiredOption('--base <expanded-dir>', 'the expanded model the run started from (holds llama_pro.json)')
    .option('--engine <name>', 'engine that produced the run (recorded in the manifest)', 'external')
    .option('--json', 'print the report as one JSON object')
    .action(async (runDir: string, opts: { base: string; engine: string; json?: boolean }) => {
      const r = await importRun(runDir, opts.base, { engine: opts.engine });
      if (opts.json) process.stdout.write(JSON.stringify(r) + '\n');
      else {
        process.stdout.write(
          `${r.ok ? 'OK' : 'DRIFT'}: ${r.frozenChecked} frozen tensors checked, ${r.drift.length} drifted; ` +
            `${r.trainableChanged.length} trainable tensors changed, ${r.trainableUnchanged.length} unchanged\n`,
        );
        for (const d of r.drift) process.stdout.write(`  ${d.reason}: ${d.name}${d.maxAbsDiff !== undefined ? ` (max |diff| ${d.maxAbsDiff})` : ''}\n`);
        if (r.unexpected.length) process.stdout.write(`  unexpected tensors in the run: ${r.unexpected.slice(0, 5).join(', ')}\n`);
      }
      if (!r.ok) throw new LlamaProError('IMPORT_DRIFT', `${runDir} changed ${r.drift.length} frozen tensor(s); the run is not recorded`);
    });
}
