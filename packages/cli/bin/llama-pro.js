#!/usr/bin/env node
// The `llama-pro` command as installed by npm (workspace bin link: `npx llama-pro` after `npm ci`).
// This file is committed so npm can link it at install time, before `npm run build` writes dist/.
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const entry = path.join(__dirname, '..', 'dist', 'bin.js');
if (!fs.existsSync(entry)) {
  process.stderr.write(`llama-pro: ${entry} is missing; build the workspace first (npm run build)\n`);
  process.exitCode = 1;
} else {
  require(entry);
}
