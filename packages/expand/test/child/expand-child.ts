// Child process for the SIGKILL test: expands argv[0] into argv[1] (interleaved, 2 groups) and prints
// one JSON line per progress event on stdout.
import { normalizeConfig, readConfigJson } from '@llama-pro/core';
import { expandModel, interleavedStrategy, zeroOutputInitializer } from '@llama-pro/expand';

async function run(): Promise<void> {
  const [input, output, shard] = process.argv.slice(3);
  const config = normalizeConfig(await readConfigJson(input!));
  await expandModel({
    input: input!,
    output: output!,
    plan: interleavedStrategy.plan(config, { groups: 2 }),
    initializer: zeroOutputInitializer,
    maxShardBytes: Number(shard),
    onProgress: (p) => process.stdout.write(JSON.stringify(p) + '\n'),
  });
  process.stdout.write('{"phase":"done"}\n');
}
run().catch((e: Error) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
