import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfCheckpoint, convertLlama2c, normalizeConfig, numel } from '@llama-pro/core';
import { STORIES260K_BIN, describeWithFixtures, fixturePath } from '@llama-pro/core/testing';

describeWithFixtures('llama2.c import of stories260K', [STORIES260K_BIN], () => {
  let out: string;
  beforeAll(async () => {
    out = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-conv-')), 'model');
    await convertLlama2c(fixturePath(...STORIES260K_BIN), out);
  });

  it('writes a config with the header facts', async () => {
    const raw = JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8'));
    const c = normalizeConfig(raw);
    expect([c.numHiddenLayers, c.numAttentionHeads, c.numKeyValueHeads, c.vocabSize, c.tieWordEmbeddings]).toEqual([5, 8, 4, 512, true]);
    expect(raw.torch_dtype).toBe('float32');
  });

  it('writes every tensor once, with no lm_head for the tied classifier', async () => {
    const ck = await HfCheckpoint.open(out);
    expect(ck.tensorNames()).toHaveLength(1 + 5 * 9 + 1);
    expect(ck.has('lm_head.weight')).toBe(false);
    const total = ck.tensorNames().reduce((a, n) => a + numel(ck.info(n).shape), 0);
    expect(total).toBe(260032); // 1,056,540-byte file = 28-byte header + 264,128 floats, of which 4,096 are rotary tables
    await ck.close();
  });
});
