// Lets a plain `node` child (the hostile suite under another uid) load the TypeScript sources: each .ts file is
// transpiled with the repo's own typescript on require (no type checking; `npm run build` does that).
const fs = require('node:fs');
const ts = require('typescript');
require.extensions['.ts'] = (module, filename) => {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  }).outputText;
  module._compile(out, filename);
};
