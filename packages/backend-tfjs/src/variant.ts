/**
 * Choosing the TensorFlow.js engine at run time: `tensorflow` (the native bindings of
 * `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`, optional peer dependencies) > `wasm` > `cpu`.
 * tfjs keeps one active engine per process; a model remembers its variant and re-activates it before
 * each operation, so models loaded with different variants can coexist (at the cost of a switch).
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '@llama-pro/core';

export const TFJS_VARIANTS = ['tensorflow', 'wasm', 'cpu'] as const;
export type TfjsVariant = (typeof TFJS_VARIANTS)[number];

/** Native packages tried, in order, for the `tensorflow` variant. */
const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

let nativePackage: string | null | undefined;

/** Loads tfjs-node-gpu / tfjs-node if installed (and sharing our tfjs-core); returns the package name or null. */
function loadNative(): string | null {
  if (nativePackage !== undefined) return nativePackage;
  nativePackage = null;
  for (const pkg of NATIVE_PACKAGES) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(pkg);
    } catch {
      continue;
    }
    // The package registers its engine in the tfjs-core copy it depends on; it is usable only when that is ours.
    if (tf.findBackendFactory('tensorflow')) {
      nativePackage = pkg;
      break;
    }
  }
  return nativePackage;
}

function ensureRegistered(variant: TfjsVariant): boolean {
  if (variant === 'cpu') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('@tensorflow/tfjs-backend-cpu');
    return true;
  }
  if (variant === 'wasm') {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require('@tensorflow/tfjs-backend-wasm');
      return tf.findBackendFactory('wasm') !== null;
    } catch {
      return false;
    }
  }
  return loadNative() !== null;
}

export function parseVariant(v: string): TfjsVariant {
  const s = v.trim().toLowerCase();
  const alias: Record<string, TfjsVariant> = { tensorflow: 'tensorflow', node: 'tensorflow', 'tfjs-node': 'tensorflow', gpu: 'tensorflow', wasm: 'wasm', cpu: 'cpu' };
  const out = alias[s];
  if (!out) throw new UsageError(`unknown tfjs variant "${v}"; choose one of ${TFJS_VARIANTS.join(', ')}`);
  return out;
}

/** Variants usable in this process, best first. */
export function availableVariants(): TfjsVariant[] {
  return TFJS_VARIANTS.filter((v) => ensureRegistered(v));
}

/** Makes `variant` the active tfjs engine (initializing it the first time). */
export async function activateVariant(variant: TfjsVariant): Promise<void> {
  if (tf.getBackend() === variant) return;
  if (!ensureRegistered(variant)) {
    const why =
      variant === 'tensorflow'
        ? `neither ${NATIVE_PACKAGES.join(' nor ')} is installed (or it uses another copy of @tensorflow/tfjs-core); install one of them next to llama-pro, or pick wasm / cpu`
        : `@tensorflow/tfjs-backend-${variant} cannot be loaded`;
    throw new UsageError(`tfjs variant "${variant}" is not available: ${why}`, 'BACKEND_UNAVAILABLE');
  }
  const ok = await tf.setBackend(variant);
  if (!ok || tf.getBackend() !== variant) throw new UsageError(`tfjs variant "${variant}" failed to initialize`, 'BACKEND_UNAVAILABLE');
  // The cpu engine prints a multi-line "install tfjs-node" banner on first use (to stdout through
  // console.warn); the choice is already logged through options.log, so mark it as shown.
  const engine = tf.backend() as unknown as { firstUse?: boolean };
  if (variant === 'cpu' && engine.firstUse === true) engine.firstUse = false;
}

/** Resolves the requested variant (or the best available one), activates it and logs the choice. */
export async function chooseVariant(requested: string | undefined, log?: (message: string) => void): Promise<TfjsVariant> {
  let variant: TfjsVariant;
  let reason: string;
  if (requested !== undefined && requested !== '' && requested !== 'auto') {
    variant = parseVariant(requested);
    reason = 'requested';
  } else {
    const avail = availableVariants();
    if (avail.length === 0) throw new UsageError('no TensorFlow.js engine can be loaded (tried tensorflow, wasm, cpu)', 'BACKEND_UNAVAILABLE');
    variant = avail[0]!;
    reason = `best available of ${avail.join(', ')}`;
  }
  await activateVariant(variant);
  const detail = variant === 'tensorflow' ? ` via ${nativePackage}` : '';
  log?.(`tfjs: using the ${variant} engine${detail} (${reason})`);
  return variant;
}
