// `npm test` runs every package's tests in one jest invocation.
// testTimeout is a global option: per-project values are ignored under `projects`, so it is set here too.
module.exports = {
  projects: ['<rootDir>/packages/*/jest.config.js', '<rootDir>/tools/jest.config.js'],
  testTimeout: 120000,
};
