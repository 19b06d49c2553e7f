// kfqn for Node: train ONNX models on onnxruntime-node (cpu, cuda, webgpu) or onnxruntime-web (wasm).
export const VERSION = '0.1.0';

export * from '../graph-tools/index.js';
export { createBackend } from './runtime/node.js';
export { RuntimeError, EXECUTION_PROVIDERS, type Backend, type Session, type ExecutionProvider, type Tensor } from './runtime/backend.js';
export { sgd, adam, rmsprop, type SgdOptions, type AdamOptions, type RmspropOptions, type ElementwiseOptimizer, type Optimizer } from './optim/index.js';
export { kbfgs, kbfgsL, kfqn, kfqnL, type KbfgsOptions, type KfqnOptions, type KroneckerOptimizer } from './optim/kbfgs.js';
export { optimizerStateReport, type StateReport, type LayerStateReport } from './optim/memory.js';
export { kfac, shampoo, type KfacOptions, type ShampooOptions, type FactoredOptimizer } from './optim/kfac.js';
export { KbfgsStepper, type StepperStep, type StepperResult, type Outputs } from './train/kbfgs-stepper.js';
export { Trainer, type TrainerOptions, type FitOptions, type FitResult, type StepInfo, type EpochInfo, type TargetKind, type RestoreResult } from './train/trainer.js';
export { decodeCheckpoint, type Checkpoint, type CheckpointHeader, type DataPosition, type BatchPlan } from './train/checkpoint.js';
export { createOptimizer, OPTIMIZER_FACTORIES, type OptimizerName } from './optim/index.js';
export { computeGradients, type GradientResult, type GradientOptions } from './train/gradients.js';
export * from './data/index.js';
export { loadDataSpec, loadIdxDir, loadBundledMnist, parseDataSpec } from './data/node.js';
export { readModelFile, readTensorFile, readCheckpointFile, writeFileAtomic, InputError } from './io/files.js';
