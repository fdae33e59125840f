import type { Command } from 'commander';
import { HfCheckpoint, OutputError, UsageError, isInside } from '@llama-pro/core';
import { exportLlamaOnnx } from '@llama-pro/backend-onnx';
import { humanBytes, progressReporter } from '../output';

export function registerExportOnnx(program: Command): void {
  program
    .command('export-onnx')
    .description('Export a Hugging Face LLaMA-family model directory to one ONNX graph (opset 17, prefill + KV-cache decode)')
    .argument('<model-dir>', 'Hugging Face model directory')
    .argument('<out>', 'output .onnx file (written atomically; weights go to <out>.data when external)')
    .option('--external-data <mode>', 'weights in an external <out>.data file: auto (beyond 2 GB), always or never', 'auto')
    .option('--force', 'replace existing output files')
    .option('--json', 'print a JSON summary')
    .action(async (modelDir: string, out: string, opts: { externalData: string; force?: boolean; json?: boolean }) => {
      const modes: Record<string, boolean | 'auto'> = { auto: 'auto', always: true, never: false };
      const externalData = modes[opts.externalData];
      if (externalData === undefined) throw new UsageError(`--external-data must be auto, always or never, got "${opts.externalData}"`);
      if (isInside(out, modelDir)) throw new OutputError(`output ${out} must not be inside the model directory ${modelDir}`);
      const ckpt = await HfCheckpoint.open(modelDir);
      const progress = progressReporter();
      try {
        progress.start(ckpt.config.numHiddenLayers + 2, 'export-onnx');
        const res = await exportLlamaOnnx(ckpt, out, { externalData, force: opts.force, onProgress: (done) => progress.update(done) });
        const summary = { out: res.file, dataFile: res.dataFile ?? null, modelBytes: res.modelBytes, dataBytes: res.dataBytes, opset: 17, layers: ckpt.config.numHiddenLayers };
        process.stdout.write(
          opts.json
            ? JSON.stringify(summary) + '\n'
            : `wrote ${res.file} (${humanBytes(res.modelBytes)}${res.dataFile ? ` + ${humanBytes(res.dataBytes)} external data` : ''}), opset 17, ${summary.layers} layers\n`,
        );
      } finally {
        progress.stop();
        await ckpt.close();
      }
    });
}
