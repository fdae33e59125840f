// Lets a plain `node` child process run the TypeScript sources (tests spawn real processes to kill them):
// `.ts` files are transpiled with TypeScript's transpileModule, and `@llama-pro/<pkg>[/testing]`
// resolves to the package sources, as in jest's moduleNameMapper.
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const os = require('node:os');

let ts; // loaded lazily: a warm cache needs no compiler
const cacheDir = path.join(os.tmpdir(), 'llama-pro-ts-register-cache');

const root = path.resolve(__dirname, '../../../..');
const origResolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const m = /^@llama-pro\/([a-z0-9-]+)(\/testing)?$/.exec(request);
  if (m) return path.join(root, 'packages', m[1], 'src', m[2] ? 'testing/index.ts' : 'index.ts');
  return origResolve.call(this, request, parent, ...rest);
};
require.extensions['.ts'] = function (module, filename) {
  const source = fs.readFileSync(filename, 'utf8');
  // Transpiled output is cached by content hash (the key includes the file name and the source).
  const key = crypto.createHash('sha256').update(filename).update('\0').update(source).digest('hex');
  const cached = path.join(cacheDir, key + '.js');
  let js;
  try {
    js = fs.readFileSync(cached, 'utf8');
  } catch {
    ts = ts || require('typescript');
    js = ts.transpileModule(source, {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, experimentalDecorators: true, emitDecoratorMetadata: true },
    }).outputText;
    try {
      fs.mkdirSync(cacheDir, { recursive: true });
      const tmp = `${cached}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, js);
      fs.renameSync(tmp, cached);
    } catch {
      // caching is best effort
    }
  }
  module._compile(js, filename);
};
