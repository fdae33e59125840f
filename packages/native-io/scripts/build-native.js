#!/usr/bin/env node
// Install step of @llama-pro/native-io: compiles the copy_file_range addon with node-gyp on Linux.
// It never fails the install: without the addon (no compiler, another OS, LLAMA_PRO_NATIVE_IO=0)
// llama-pro copies tensor bytes through user space instead, which is correct, only slower.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const skip = (why) => {
  process.stderr.write(`@llama-pro/native-io: ${why}; tensor copies will go through user space (slower, same bytes)\n`);
  process.exit(0);
};
if (process.env.LLAMA_PRO_NATIVE_IO === '0') skip('LLAMA_PRO_NATIVE_IO=0, not building the addon');
if (process.platform !== 'linux') skip(`copy_file_range is Linux-only (this is ${process.platform}), not building the addon`);

// npm tells lifecycle scripts where its bundled node-gyp is; otherwise look next to this node.
const candidates = [
  process.env.npm_config_node_gyp,
  path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].filter((p) => p && existsSync(p));
// Build against the running Node's own headers when npm does not name a nodedir and they are installed
// next to it (official tarballs, distro packages): no download, so it works behind a closed network.
const args = ['rebuild'];
const prefix = path.dirname(path.dirname(process.execPath));
if (!process.env.npm_config_nodedir && existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
// Bounded: without local headers node-gyp downloads them, which may hang behind a closed network.
const options = { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 300_000 };
const r = candidates.length ? spawnSync(process.execPath, [candidates[0], ...args], options) : spawnSync('node-gyp', args, options);
if (r.status !== 0) {
  process.stderr.write((r.stdout || '') + (r.stderr || '') + (r.error ? String(r.error) + '\n' : ''));
  skip('node-gyp could not build the addon (needs python3, make and a C compiler; see the output above)');
}
process.stderr.write('@llama-pro/native-io: built the copy_file_range addon\n');
