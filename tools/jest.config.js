const path = require('node:path');
// The llama.cpp comparison test runs ONNX Runtime: share the main realm's typed arrays with jest's sandbox
// (see packages/backend-onnx/jest-environment.js).
module.exports = { ...require("../jest.preset.js")(__dirname), testEnvironment: path.join(__dirname, '../packages/backend-onnx/jest-environment.js') };
