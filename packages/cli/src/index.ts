export { main, buildProgram } from './main';
export { buildContainer, builtinPlugins } from './container';
