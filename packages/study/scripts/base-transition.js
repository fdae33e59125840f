#!/usr/bin/env node
/**
 * Base-transition harness: pretrains the `mini` preset's base with the study's own `pretrainBase` for
 * several base seeds and prints the live model's exact-match accuracy on the study's test problems every
 * `--every` steps (one JSON line per point). Used to choose `base.pretrain` so that every base seed is past
 * the abrupt emergence of copying with margin (packages/study/README.md). Needs `npm run build` first.
 *
 *   node packages/study/scripts/base-transition.js --seeds 0,1,2,3 [--steps 2000] [--every 250]
 *     [--lr 0.01] [--corpus-seed N] [--domain-in-general 0.3] [--out /tmp/base-transition]
 */
'use strict';
const os = require('node:os');
const path = require('node:path');
const { resolveStudyConfig, loadStudyCorpora, pretrainBase, answerAccuracy } = require('../dist');
const { buildContainer } = require('../../cli/dist/container');
const { resolveBackend } = require('../../cli/dist/backend-option');
const { freezePolicies, lrSchedules } = require('@llama-pro/train');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function main() {
  const seeds = arg('seeds', '0,1,2,3').split(',').map(Number);
  const every = Number(arg('every', '250'));
  const out = path.resolve(arg('out', path.join(os.tmpdir(), 'base-transition')));
  const over = { base: { pretrain: {} }, corpus: {} };
  if (arg('steps')) over.base.pretrain.steps = Number(arg('steps'));
  if (arg('lr')) over.base.pretrain.lr = Number(arg('lr'));
  if (arg('batch')) over.base.pretrain.batchSize = Number(arg('batch'));
  if (arg('corpus-seed')) over.corpus.seed = Number(arg('corpus-seed'));
  if (arg('domain-in-general')) over.corpus.domainInGeneral = Number(arg('domain-in-general'));
  const container = await buildContainer([]);
  for (const seed of seeds) {
    const config = resolveStudyConfig('mini', [{ ...over, base: { ...over.base, seed } }]);
    const { backend } = resolveBackend(container, config.backend);
    const corpora = await loadStudyCorpora(config);
    const test = corpora.domainTest.slice(0, config.eval.testProblems);
    const t0 = Date.now();
    await pretrainBase(config, corpora.generalTrain, { backend, policies: freezePolicies(container), schedules: lrSchedules(container) }, {
      entry: path.join(out, `corpus-${config.corpus.seed}-seed-${seed}-steps-${config.base.pretrain.steps}`),
      loadOptions: config.threads ? { threads: config.threads } : {},
      onStep: async (r, model, tok) => {
        if (r.step % every !== 0 && r.step !== config.base.pretrain.steps) return;
        const a = await answerAccuracy(model, tok, test, config.eval.maxNewTokens, test.length);
        process.stdout.write(JSON.stringify({ corpusSeed: config.corpus.seed, seed, totalSteps: config.base.pretrain.steps, lr: config.base.pretrain.lr, step: r.step, loss: r.loss, accuracy: a.accuracy, correct: a.correct, total: a.total, s: (Date.now() - t0) / 1000 }) + '\n');
      },
    });
  }
}

main().catch((e) => {
  process.stderr.write(`base-transition: ${e.stack ?? e}\n`);
  process.exit(1);
});
