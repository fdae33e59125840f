// Runs a TypeScript entry file in a plain Node child process without a build: `.ts` files are transpiled
// on require with the installed TypeScript compiler, and `@llama-pro/<pkg>` maps to the package sources
// (as in jest). Usage: node ts-child.js <entry.ts> [args...]
const Module = require('node:module');
const path = require('node:path');
const fs = require('node:fs');
const ts = require('typescript');

const root = path.resolve(__dirname, '../../../..');
const originalResolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const m = /^@llama-pro\/([a-z0-9-]+)(\/testing)?$/.exec(request);
  const target = m ? path.join(root, 'packages', m[1], 'src', m[2] ? 'testing/index.ts' : 'index.ts') : request;
  return originalResolve.call(this, target, parent, ...rest);
};
require.extensions['.ts'] = (module, filename) => {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, experimentalDecorators: true, emitDecoratorMetadata: true },
  });
  module._compile(outputText, filename);
};
require(path.resolve(process.argv[2]));
