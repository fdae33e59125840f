/** @llama-pro/backend-tfjs public API. */
export { tfjsBackend, tfjsBackendPlugin } from './backend';
export { TfjsLlama } from './model';
export { TFJS_VARIANTS, type TfjsVariant, availableVariants, chooseVariant, parseVariant } from './variant';
