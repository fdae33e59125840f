/**
 * Training on ONNX Runtime through generated backward graphs. The optimizer and the training loop are
 * `@llama-pro/train`'s (one AdamW, one Trainer for every backend); this model hands them its resident
 * parameter arrays (`residentParameter` / `parametersChanged`) so updates need no copies.
 */
export * from './train-graph';
export * from './model';
export * from './calibrate';
