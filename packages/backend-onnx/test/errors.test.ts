import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ConfigError, HfCheckpoint, UsageError, normalizeConfig, type WeightSource } from '@llama-pro/core';
import { tinyRawConfig, writeRandomCheckpoint } from '@llama-pro/core/testing';
import { OnnxBackend, type OnnxCausalLM, onnxBackendPlugin } from '../src';
import { createAppContainer, resolveRegistry, TOKENS, type ModelBackend } from '@llama-pro/core';

describe('onnx backend input validation (typed errors, never native failures)', () => {
  let tmp: string;
  let ckpt: HfCheckpoint;
  let model: OnnxCausalLM;
  const V = 64;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'onnx-err-'));
    await writeRandomCheckpoint(path.join(tmp, 'm'), tinyRawConfig({ vocab: V, layers: 2, heads: 4, kvHeads: 2, maxPositions: 16 }), { seed: 3 });
    ckpt = await HfCheckpoint.open(path.join(tmp, 'm'));
    model = await new OnnxBackend().load(ckpt, { threads: 1 });
  });
  afterAll(async () => {
    await model?.dispose();
    await ckpt?.close();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('rejects ids outside the vocabulary, naming the row and position', async () => {
    const ids = Int32Array.from([1, 2, 3, V]);
    await expect(model.forward({ ids, batchSize: 2, seqLen: 2 })).rejects.toThrow(new UsageError('token id 64 at row 1, position 1 is outside the vocabulary [0, 64); check the tokenizer matches the model', 'TOKEN_OUT_OF_VOCAB'));
    await expect(model.forward({ ids: Int32Array.of(-1), batchSize: 1, seqLen: 1 })).rejects.toBeInstanceOf(UsageError);
    const s = model.startSession(1);
    await expect(s.step({ ids: Int32Array.of(V + 5), batchSize: 1, seqLen: 1 })).rejects.toMatchObject({ code: 'TOKEN_OUT_OF_VOCAB' });
    expect(s.length).toBe(0); // a failed step leaves the session unchanged
    await s.step({ ids: Int32Array.of(1), batchSize: 1, seqLen: 1 });
    expect(s.length).toBe(1);
    s.dispose();
  });

  it('rejects shape mismatches: ids vs batch*seq, mask length, batch size of a session', async () => {
    await expect(model.forward({ ids: Int32Array.of(1, 2, 3), batchSize: 2, seqLen: 2 })).rejects.toThrow(/ids has 3 elements but batchSize\*seqLen = 2\*2 = 4/);
    await expect(model.forward({ ids: Int32Array.of(1, 2), batchSize: 1, seqLen: 2, attentionMask: Uint8Array.of(1) })).rejects.toThrow(/attention mask has 1 elements/);
    await expect(model.forward({ ids: Int32Array.of(1, 2), batchSize: 1, seqLen: 2, attentionMask: Uint8Array.of(1, 2) })).rejects.toThrow(/must be 0 or 1/);
    await expect(model.forward({ ids: new Int32Array(0), batchSize: 1, seqLen: 0 })).rejects.toThrow(/sequence length must be a positive integer/);
    const s = model.startSession(2);
    await expect(s.step({ ids: Int32Array.of(1), batchSize: 1, seqLen: 1 })).rejects.toThrow(/decodes 2 rows; the step has 1/);
    s.dispose();
    await expect(s.step({ ids: Int32Array.of(1, 1), batchSize: 2, seqLen: 1 })).rejects.toMatchObject({ code: 'SESSION_DISPOSED' });
    expect(() => model.startSession(0)).toThrow(UsageError);
    await expect(model.tokenLogprobs({ ids: Int32Array.of(1, 2), batchSize: 1, seqLen: 2, targets: Int32Array.of(2, 99) })).rejects.toMatchObject({ code: 'TOKEN_OUT_OF_VOCAB' });
  });

  it('rejects a wrong past length or malformed past tensors in the low-level step', async () => {
    const first = await model.runStep({ ids: Int32Array.of(1, 2, 3), batchSize: 1, seqLen: 3 });
    expect(first.present[0]!.dims).toEqual([1, 2, 3, 8]);
    // mask must cover past (3) + new (1) = 4
    await expect(model.runStep({ ids: Int32Array.of(4), batchSize: 1, seqLen: 1, past: first.present, attentionMask: Uint8Array.of(1, 1, 1) })).rejects.toMatchObject({ code: 'PAST_MISMATCH' });
    await expect(model.runStep({ ids: Int32Array.of(4), batchSize: 1, seqLen: 1, past: first.present.slice(1) })).rejects.toThrow(/past holds 3 tensors; this model needs 4/);
    const bad = [...first.present];
    bad[3] = new ort.Tensor('float32', new Float32Array(2 * 2 * 8), [1, 2, 2, 8]);
    await expect(model.runStep({ ids: Int32Array.of(4), batchSize: 1, seqLen: 1, past: bad })).rejects.toThrow(/past tensor 3 \(value of layer 1\) is float32 \[1, 2, 2, 8\]; expected float32 \[1, 2, 3, 8\]/);
    const ok = await model.runStep({ ids: Int32Array.of(4), batchSize: 1, seqLen: 1, past: first.present });
    expect(ok.present[0]!.dims).toEqual([1, 2, 4, 8]);
    await expect(model.runStep({ ids: Int32Array.of(1), batchSize: 1, seqLen: 1, logitsToKeep: 2 })).rejects.toThrow(/logitsToKeep/);
  });

  it('rejects sequences beyond max_position_embeddings', async () => {
    await expect(model.forward({ ids: new Int32Array(17).fill(1), batchSize: 1, seqLen: 17 })).rejects.toMatchObject({ code: 'SEQUENCE_TOO_LONG' });
    const s = model.startSession(1);
    await s.step({ ids: new Int32Array(16).fill(1), batchSize: 1, seqLen: 16 });
    await expect(s.step({ ids: Int32Array.of(1), batchSize: 1, seqLen: 1 })).rejects.toThrow(/sequence length 17 exceeds the model's 16 positions/);
    s.dispose();
  });

  it('rejects unknown variants, bad session options and unsupported configs', async () => {
    const backend = new OnnxBackend();
    await expect(backend.load(ckpt, { variant: 'cuda' })).rejects.toThrow(/unknown onnx backend variant "cuda"; known: cpu/);
    await expect(backend.load(ckpt, { threads: 0 })).rejects.toThrow(/threads must be a positive integer/);
    await expect(backend.load(ckpt, { graphOptimizationLevel: 'max' as never })).rejects.toThrow(/unknown graph optimization level "max"/);
    const moe: WeightSource = { config: normalizeConfig({ ...tinyRawConfig(), architectures: ['MixtralForCausalLM'], num_local_experts: 2 }), tensorNames: () => [], info: () => { throw new Error('unused'); }, readFloat32: () => Promise.reject(new Error('unused')) };
    await expect(backend.load(moe)).rejects.toBeInstanceOf(ConfigError);
    // Unknown rope types are refused when the config is read, naming the key and the value.
    expect(() => normalizeConfig(tinyRawConfig({ extra: { rope_scaling: { rope_type: 'su', factor: 4 } } }))).toThrow(/"rope_scaling.rope_type" is "su", which llama-pro does not implement/);
    const chunked: WeightSource = { ...moe, config: normalizeConfig(tinyRawConfig({ extra: { attention_chunk_size: 8 } })) };
    await expect(backend.load(chunked)).rejects.toThrow(/"attention_chunk_size" is 8 .*which the onnx backend does not implement/);
    await expect(backend.load(ckpt, { onnxFile: path.join(tmp, 'missing.onnx') })).rejects.toMatchObject({ code: 'ONNX_LOAD' });
  });

  it('session options: the memory arena is on unless turned off', () => {
    const b = new OnnxBackend();
    expect(b.sessionOptions()).toMatchObject({ enableCpuMemArena: true, executionMode: 'sequential' });
    expect(b.sessionOptions({ memArena: false })).toMatchObject({ enableCpuMemArena: false });
  });

  it('a disposed model refuses further use', async () => {
    const m = await new OnnxBackend().load(ckpt, { threads: 1 });
    await m.dispose();
    await expect(m.forward({ ids: Int32Array.of(1), batchSize: 1, seqLen: 1 })).rejects.toMatchObject({ code: 'MODEL_DISPOSED' });
  });

  it('the plugin registers the backend under TOKENS.Backend as "onnx"', async () => {
    const c = await createAppContainer([onnxBackendPlugin]);
    const reg = resolveRegistry<ModelBackend>(c, TOKENS.Backend, 'backend');
    expect(reg.names()).toEqual(['onnx']);
    expect(reg.get('onnx').supportsTraining).toBe(true);
    expect(typeof reg.get('onnx').loadTrainable).toBe('function');
  });
});
