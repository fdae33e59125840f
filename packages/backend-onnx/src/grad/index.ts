/** Per-op gradients (VJPs) of the ONNX training graph, and the tape that applies them. */
export { Tape, type OpGrad } from './tape';
export { add, addGrad } from './add';
export { attention, attentionGrad, type AttentionOptions, type AttentionShape } from './attention';
export { embed, embedGrad } from './embed';
export { linear, linearGrad, type LinearMap } from './linear';
export { rmsNorm, rmsNormGrad } from './rmsnorm';
export { rope, ropeGrad, type RopeTables } from './rope';
export { swiglu, swigluGrad } from './swiglu';
export { headCrossEntropy, xentGrad } from './xent';
