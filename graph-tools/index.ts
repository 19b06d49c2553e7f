// graph-tools: ONNX in, ONNX out. No runtime, no Node built-ins.
export * from './onnx/index.js';
export { A, Graph, GraphError, type Dim, type ValueType, type ValueInfo, type Node } from './ir/graph.js';
export { Emitter } from './ir/emitter.js';
export { inferShapes } from './ir/shapes.js';
export { gateOutputs } from './ir/conditional.js';
export { mergeCommonSubexpressions } from './ir/cse.js';
export { removeDeadNodes } from './ir/dead-nodes.js';
export { findLayers, requireLayers, type Layer, type LayerReport, type LayerKind } from './layers.js';
export { LOSSES, REDUCTIONS, emitLoss, targetType, type LossKind, type Reduction, type LossSpec } from './losses.js';
export { buildTrainingGraph, buildEvaluationGraph, CORRECT_OUTPUT, prepareGraph, TARGET_INPUT, LOSS_OUTPUT, outName, type TrainingGraph, type TrainingGraphOptions, type Capture, type TrainingOutputs, type EvaluationGraph } from './training.js';
export { supportedOps } from './autodiff/index.js';
export { toFloat64 } from './precision.js';
export { withTrainedParameters } from './export.js';
export { statName, type StatisticsRequest, type LayerStatistics } from './statistics.js';
export { BATCHNORM_MODES, bufferOutputName, type BatchNormMode, type BufferUpdate } from './batchnorm.js';
export { emitBfgsInverseUpdate, emitDoubleDamping, emitPrecondition, emitHessianActionPair, emitRegularizedInverse, kernelModel } from './kernels/bfgs.js';
export { emitLbfgsApply, emitLbfgsPush, emitLbfgsGamma, emptyLbfgsState, type LbfgsH0 } from './kernels/lbfgs.js';
export { emitInverseRoot, type InverseRootOptions } from './kernels/roots.js';
