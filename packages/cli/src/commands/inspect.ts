import { promises as fsp } from 'node:fs';
import type { Command } from 'commander';
import { HfCheckpoint, countParameters, readLlama2cLayout } from '@llama-pro/core';
import { humanBytes, humanCount, table } from '../output';

/** Everything `inspect` reports about an HF model directory. */
export async function inspectModel(dir: string): Promise<Record<string, unknown>> {
  const ck = await HfCheckpoint.open(dir);
  try {
    const c = ck.config;
    return {
      path: dir,
      format: 'huggingface',
      architecture: c.architectureClass,
      modelType: c.architecture,
      layers: c.numHiddenLayers,
      hiddenSize: c.hiddenSize,
      intermediateSize: c.intermediateSize,
      heads: c.numAttentionHeads,
      kvHeads: c.numKeyValueHeads,
      headDim: c.headDim,
      vocabSize: c.vocabSize,
      maxPositions: c.maxPositionEmbeddings,
      ropeTheta: c.ropeTheta,
      ropeScaling: c.ropeScaling,
      rmsNormEps: c.rmsNormEps,
      tieWordEmbeddings: c.tieWordEmbeddings,
      bias: { qkv: c.qkvBias, o: c.oBias, mlp: c.mlpBias },
      experts: c.numExperts,
      torchDtype: c.torchDtype,
      dtypes: ck.dtypeCounts(),
      parameters: countParameters(c),
      tensors: ck.tensorNames().length,
      bytes: ck.totalBytes(),
      shards: ck.shards.map((s) => ({ file: s.path.split(/[\\/]/).pop(), tensors: s.tensors.length, bytes: s.fileSize })),
    };
  } finally {
    await ck.close();
  }
}

async function inspectLlama2c(file: string): Promise<Record<string, unknown>> {
  const { header: h } = await readLlama2cLayout(file);
  return {
    path: file,
    format: `llama2.c v${h.version}`,
    layers: h.nLayers,
    hiddenSize: h.dim,
    intermediateSize: h.hiddenDim,
    heads: h.nHeads,
    kvHeads: h.nKvHeads,
    headDim: h.dim / h.nHeads,
    vocabSize: h.vocabSize,
    maxPositions: h.seqLen,
    tieWordEmbeddings: h.sharedClassifier,
    quantization: h.version === 2 ? `Q8_0 (group ${h.groupSize})` : 'none (float32)',
  };
}

function render(info: Record<string, unknown>): string {
  const p = info['parameters'] as ReturnType<typeof countParameters> | undefined;
  const rows: [string, string | number][] = [
    ['path', String(info['path'])],
    ['format', String(info['format'])],
  ];
  if (info['architecture']) rows.push(['architecture', `${info['architecture']} (${info['modelType']})`]);
  rows.push(
    ['layers', info['layers'] as number],
    ['hidden / intermediate', `${info['hiddenSize']} / ${info['intermediateSize']}`],
    ['heads / kv heads / head dim', `${info['heads']} / ${info['kvHeads']} / ${info['headDim']}`],
    ['vocab / max positions', `${info['vocabSize']} / ${info['maxPositions']}`],
    ['tied embeddings', String(info['tieWordEmbeddings'])],
  );
  if (info['ropeTheta'] !== undefined) rows.push(['rope theta / scaling', `${info['ropeTheta']} / ${info['ropeScaling'] ? JSON.stringify(info['ropeScaling']) : 'none'}`]);
  if (info['bias']) {
    const b = info['bias'] as Record<string, boolean>;
    rows.push(['biases (qkv / o / mlp)', `${b['qkv']} / ${b['o']} / ${b['mlp']}`]);
  }
  if (info['quantization']) rows.push(['quantization', String(info['quantization'])]);
  if (p) {
    rows.push(
      ['params: embedding', humanCount(p.embedding)],
      ['params: per layer', humanCount(p.perLayer)],
      ['params: all layers', humanCount(p.layers)],
      ['params: final norm', humanCount(p.finalNorm)],
      ['params: lm_head', p.lmHead ? humanCount(p.lmHead) : 'tied'],
      ['params: total', `${humanCount(p.total)} (${p.total})`],
    );
  }
  if (info['dtypes']) rows.push(['dtypes', Object.entries(info['dtypes'] as Record<string, number>).map(([d, n]) => `${d}×${n}`).join(', ')]);
  if (info['shards']) {
    const shards = info['shards'] as { file: string; tensors: number; bytes: number }[];
    rows.push(['tensors / bytes', `${info['tensors']} / ${humanBytes(info['bytes'] as number)}`]);
    rows.push(['shards', String(shards.length)]);
    for (const s of shards) rows.push([`  ${s.file}`, `${s.tensors} tensors, ${humanBytes(s.bytes)}`]);
  }
  return table(rows);
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('Show architecture, layer/head counts, parameters per group, dtypes and shards of a model (HF directory or llama2.c .bin)')
    .argument('<model>', 'Hugging Face model directory or llama2.c checkpoint')
    .option('--json', 'print one JSON object')
    .action(async (model: string, opts: { json?: boolean }) => {
      const st = await fsp.stat(model).catch(() => null);
      const info = st?.isFile() ? await inspectLlama2c(model) : await inspectModel(model);
      process.stdout.write((opts.json ? JSON.stringify(info) : render(info)) + '\n');
    });
}
