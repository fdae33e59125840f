/**
 * The exported surface of every published package (DESIGN habit 6: a public-API barrel per package and a
 * snapshot of it). A change to a package's exports shows up here as a snapshot diff to review; update with
 * `npx jest tools/test/public-api.test.ts -u` when the change is intended (and add a changeset).
 */
import * as nativeIo from '@llama-pro/native-io';
import * as core from '@llama-pro/core';
import * as coreTesting from '@llama-pro/core/testing';
import * as backendTfjs from '@llama-pro/backend-tfjs';
import * as backendOnnx from '@llama-pro/backend-onnx';
import * as expand from '@llama-pro/expand';
import * as train from '@llama-pro/train';
import * as sandbox from '@llama-pro/sandbox';
import * as evaluation from '@llama-pro/eval';
import * as agent from '@llama-pro/agent';
import * as engines from '@llama-pro/engines';
import * as study from '@llama-pro/study';
import * as cli from '@llama-pro/cli';

const surfaces: Record<string, Record<string, unknown>> = {
  '@llama-pro/native-io': nativeIo,
  '@llama-pro/core': core,
  '@llama-pro/core/testing': coreTesting,
  '@llama-pro/backend-tfjs': backendTfjs,
  '@llama-pro/backend-onnx': backendOnnx,
  '@llama-pro/expand': expand,
  '@llama-pro/train': train,
  '@llama-pro/sandbox': sandbox,
  '@llama-pro/eval': evaluation,
  '@llama-pro/agent': agent,
  '@llama-pro/engines': engines,
  '@llama-pro/study': study,
  '@llama-pro/cli': cli,
};

it.each(Object.keys(surfaces))('%s exports', (name) => {
  const mod = surfaces[name]!;
  const described = Object.keys(mod)
    .filter((k) => k !== '__esModule')
    .sort()
    .map((k) => `${k}: ${typeof mod[k]}`);
  expect(described.length).toBeGreaterThan(0);
  expect(described).toMatchSnapshot();
});
