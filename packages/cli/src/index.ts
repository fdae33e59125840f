export { main, buildProgram } from './main';
export { EXIT, exitCodeFor, InterruptedError, noteInterrupted } from './exit-codes';
export { buildContainer, builtinPlugins } from './container';
