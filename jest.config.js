// `npm test` runs every package's tests in one jest invocation.
module.exports = {
  projects: ['<rootDir>/packages/*/jest.config.js', '<rootDir>/tools/jest.config.js'],
};
