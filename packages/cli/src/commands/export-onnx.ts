import type { Command } from 'commander';
import { HfCheckpoint, OutputError, UsageError, exitCleanlyOnInterrupt, isInside, openRegularFile, pathExists } from '@llama-pro/core';
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
      exitCleanlyOnInterrupt();
      if (opts.force) await checkOnnxReplaceable(out);
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

/**
 * ONNX models this command writes name "llama-pro" as producer_name (ModelProto field 2). protobuf
 * writers emit it within the first fields (after ir_version and the small opset_import list), so the
 * first 64 KiB hold it: bytes 0x12 (field 2, length-delimited), 0x09 (9 bytes), "llama-pro".
 */
async function isLlamaProOnnx(file: string): Promise<boolean> {
  try {
    const { fh } = await openRegularFile(file, (d, c) => new OutputError(d, c));
    try {
      const head = Buffer.alloc(64 << 10);
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      return head.subarray(0, bytesRead).includes(Buffer.concat([Buffer.from([0x12, 0x09]), Buffer.from('llama-pro')]));
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}

/** `--force` replaces only an ONNX model (and its .data) that this command wrote, never another file. */
async function checkOnnxReplaceable(out: string): Promise<void> {
  const hasModel = await pathExists(out);
  if (hasModel && !(await isLlamaProOnnx(out))) {
    throw new OutputError(`output ${out} exists and is not an ONNX model written by \`llama-pro export-onnx\`; --force will not replace it, remove it yourself or choose another path`, 'OUTPUT_NOT_OURS');
  }
  if (!hasModel && (await pathExists(`${out}.data`))) {
    throw new OutputError(`${out}.data exists without its model ${out}, so it cannot be told apart from someone else's file; --force will not replace it, remove it yourself or choose another path`, 'OUTPUT_NOT_OURS');
  }
}
