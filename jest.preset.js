// Shared jest settings: every package's jest.config.js calls this with its own directory.
// Tests run the TypeScript sources directly (ts-jest, transpile-only; `npm run build` type-checks),
// and `@llama-pro/<pkg>` resolves to the sibling package's src so no build is needed to test.
const path = require('node:path');

module.exports = function preset(dir) {
  const root = __dirname;
  return {
    displayName: path.basename(dir),
    rootDir: dir,
    testEnvironment: 'node',
    testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
    transform: {
      '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(root, 'tsconfig.spec.json') }],
    },
    moduleNameMapper: {
      '^@llama-pro/([a-z0-9-]+)$': path.join(root, 'packages/$1/src/index.ts'),
      '^@llama-pro/([a-z0-9-]+)/testing$': path.join(root, 'packages/$1/src/testing/index.ts'),
      '^@llama-pro/core/native$': path.join(root, 'packages/core/src/io/native.ts'),
    },
    setupFiles: [path.join(root, 'jest.setup.js')],
    testTimeout: 120000,
  };
};
