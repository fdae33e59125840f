/** Training on ONNX Runtime through generated backward graphs. */
export * from './train-graph';
export * from './model';
export * from './adamw';
export * from './trainer';
export * from './calibrate';
