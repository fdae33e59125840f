import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  NamedRegistry,
  PLUGIN_API_VERSION,
  PluginError,
  RegistryError,
  TOKENS,
  createAppContainer,
  loadPlugins,
  resolveRegistry,
  type LlamaProPlugin,
} from '@llama-pro/core';
import { tmpDir } from './helpers';

interface Strategy {
  readonly name: string;
  run(): string;
}

const builtin: LlamaProPlugin = {
  meta: { name: 'builtin-strategies', version: '0.0.0', apiVersion: PLUGIN_API_VERSION },
  register(c) {
    c.register(TOKENS.ExpansionStrategy, { useValue: { name: 'interleaved', run: () => 'paper' } });
    c.register(TOKENS.ExpansionStrategy, { useValue: { name: 'top', run: () => 'top' } });
  },
};

describe('named registries', () => {
  it('rejects duplicates and lists known names for unknown ones', () => {
    const r = new NamedRegistry<Strategy>('expansion strategy', [
      { name: 'b', run: () => '' },
      { name: 'a', run: () => '' },
    ]);
    expect(r.names()).toEqual(['a', 'b']);
    expect(() => r.add({ name: 'a', run: () => '' })).toThrow(/duplicate expansion strategy "a"/);
    expect(() => r.get('zzz')).toThrow(RegistryError);
    expect(() => r.get('zzz')).toThrow('unknown expansion strategy "zzz"; known: a, b');
  });
});

describe('plugins', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tmpDir('lp-plugin-');
    // A separate local npm package (its own package.json, plain CommonJS, no import of our sources).
    const pkg = path.join(dir, 'node_modules', 'llama-pro-plugin-reverse');
    await fsp.mkdir(pkg, { recursive: true });
    await fsp.writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name: 'llama-pro-plugin-reverse', version: '1.2.3', main: 'index.js' }));
    await fsp.writeFile(
      path.join(pkg, 'index.js'),
      `module.exports = { meta: { name: 'reverse', version: '1.2.3', apiVersion: ${PLUGIN_API_VERSION} },
         register(c) { c.register(Symbol.for('llama-pro.ExpansionStrategy'), { useValue: { name: 'reverse', run: () => 'reversed' } }); } };`,
    );
    await fsp.writeFile(
      path.join(dir, 'local-plugin.js'),
      `exports.default = { meta: { name: 'local', version: '0.1.0', apiVersion: ${PLUGIN_API_VERSION} },
         register(c) { c.register(Symbol.for('llama-pro.ExpansionStrategy'), { useValue: { name: 'every-other', run: () => 'eo' } }); } };`,
    );
    await fsp.writeFile(path.join(dir, 'old-plugin.js'), `module.exports = { meta: { name: 'old', version: '0.0.1', apiVersion: 0 }, register() {} };`);
    await fsp.writeFile(path.join(dir, 'not-a-plugin.js'), `module.exports = { hello: 1 };`);
    await fsp.writeFile(path.join(dir, 'dup-plugin.js'), `module.exports = { meta: { name: 'dup', version: '1', apiVersion: ${PLUGIN_API_VERSION} }, register(c) { c.register(Symbol.for('llama-pro.ExpansionStrategy'), { useValue: { name: 'top', run: () => 'x' } }); } };`);
  });

  it('a plugin from a separate package adds a named implementation next to the built-ins', async () => {
    const plugins = await loadPlugins(['llama-pro-plugin-reverse', './local-plugin.js'], dir);
    expect(plugins.map((p) => p.meta.name)).toEqual(['reverse', 'local']);
    const c = await createAppContainer([builtin], plugins);
    const reg = resolveRegistry<Strategy>(c, TOKENS.ExpansionStrategy, 'expansion strategy');
    expect(reg.names()).toEqual(['every-other', 'interleaved', 'reverse', 'top']);
    expect(reg.get('reverse').run()).toBe('reversed');
  });

  it('two containers do not see each other', async () => {
    const a = await createAppContainer([builtin]);
    const b = await createAppContainer([]);
    expect(resolveRegistry<Strategy>(a, TOKENS.ExpansionStrategy, 's').names()).toEqual(['interleaved', 'top']);
    expect(resolveRegistry<Strategy>(b, TOKENS.ExpansionStrategy, 's').names()).toEqual([]);
  });

  it('a plugin re-registering a built-in name is a duplicate', async () => {
    const c = await createAppContainer([builtin], await loadPlugins(['./dup-plugin.js'], dir));
    expect(() => resolveRegistry<Strategy>(c, TOKENS.ExpansionStrategy, 'expansion strategy')).toThrow(/duplicate expansion strategy "top"/);
  });

  it.each([
    ['./missing.js', /cannot find plugin "\.\/missing\.js"/],
    ['no-such-package', /cannot find plugin "no-such-package"/],
    ['./old-plugin.js', /targets plugin API 0, but this llama-pro provides API 1/],
    ['./not-a-plugin.js', /plugin must have meta/],
  ])('refuses %s', async (spec, msg) => {
    await expect(loadPlugins([spec], dir)).rejects.toThrow(PluginError);
    await expect(loadPlugins([spec], dir)).rejects.toThrow(msg);
  });

  it('refuses the same plugin listed twice', async () => {
    await expect(loadPlugins(['./local-plugin.js', './local-plugin.js'], dir)).rejects.toThrow(/listed twice/);
  });
});
