/** The tfjs backend's plugin entry alone (what the CLI's container imports): no model or engine code until a load. */
export { tfjsBackend, tfjsBackendPlugin } from './backend';
