import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expandConfigJsonSchema, loadExpandConfig, parseExpandConfig } from '../src';

const SCHEMA_FILE = path.join(__dirname, '..', 'schema', 'expand.schema.json');

describe('expand config', () => {
  it('the committed JSON schema is up to date (regenerate: UPDATE_SCHEMA=1 npx jest packages/expand/test/config.test.ts)', async () => {
    const current = JSON.stringify(expandConfigJsonSchema(), null, 2) + '\n';
    if (process.env['UPDATE_SCHEMA'] === '1') await fsp.writeFile(SCHEMA_FILE, current);
    expect(await fsp.readFile(SCHEMA_FILE, 'utf8')).toBe(current);
  });

  it('defaults are the flags\' defaults (interleaved, zero-output, no verify, 5GB shards, base hash on)', () => {
    expect(parseExpandConfig({})).toEqual({ strategy: { name: 'interleaved' }, init: 'zero-output', verify: false, shardSize: '5GB', force: false, baseHash: true, plugins: [] });
  });

  it('loads YAML, resolves plugin paths against the file, rejects unknown keys with the field named', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-expcfg-'));
    const f = path.join(dir, 'expand.yaml');
    await fsp.writeFile(f, 'input: org/base\noutput: out\nstrategy: { name: positions, at: [1, 4], from: "0,2" }\nverify: { mode: report, backend: tfjs }\nplugins: [./p.js, some-package]\n');
    const c = await loadExpandConfig(f);
    expect(c).toMatchObject({ input: 'org/base', output: 'out', strategy: { name: 'positions', at: [1, 4], from: '0,2' }, verify: { mode: 'report', backend: 'tfjs' }, plugins: [path.join(dir, 'p.js'), 'some-package'] });
    await fsp.writeFile(f, 'strategy: { name: top, block: 2 }\n');
    await expect(loadExpandConfig(f)).rejects.toThrow(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: strategy: Unrecognized key: "block"$`));
    await expect(loadExpandConfig(path.join(dir, 'nope.yaml'))).rejects.toThrow(/cannot read expand config .*nope.yaml: ENOENT/);
    await fsp.rm(dir, { recursive: true });
  });
});
