const path = require('node:path');
// Every command defaults to the onnx backend, so every CLI test may run ONNX Runtime: share the main
// realm's typed arrays with jest's sandbox (see backend-onnx/jest-environment.js).
module.exports = { ...require('../../jest.preset.js')(__dirname), testEnvironment: path.join(__dirname, '../backend-onnx/jest-environment.js') };
