/** Test helpers for trainer code and plugins: a deterministic TrainableLM with analytic gradients. */
export * from './toy-lm';
export * from './toy-checkpoint';
