const path = require('node:path');
module.exports = { ...require('../../jest.preset.js')(__dirname), testEnvironment: path.join(__dirname, 'jest-environment.js') };
