// The fused step graph of an elementwise optimizer: training graph + parameter updates, so one
// session.run takes (batch, parameters, state, scalars) and returns (loss, new parameters, new
// state). Gradients stay inside ORT.
import { buildTrainingGraph, type onnx, type TrainingGraph, type TrainingGraphOptions, type ValueInfo } from '../../graph-tools/index.js';
import type { ElementwiseOptimizer } from '../optim/optimizer.js';

export const stepName = {
  state: (p: string, s: string) => `kfqn:state:${s}:${p}`,
  newState: (p: string, s: string) => `kfqn:new-state:${s}:${p}`,
  newParam: (p: string) => `kfqn:new:${p}`,
  scalar: (s: string) => `kfqn:scalar:${s}`,
};

export interface StepGraph {
  training: TrainingGraph;
  parameters: ValueInfo[];
  /** Parameters the step updates, each with optimizer state (the rest do not reach the loss). */
  updated: string[];
  scalars: string[];
  model: onnx.ModelProto;
}

export function buildStepGraph(model: onnx.ModelProto, spec: Omit<TrainingGraphOptions, 'capture'>, optimizer: ElementwiseOptimizer): StepGraph {
  const tg = buildTrainingGraph(model, { ...spec, capture: { gradients: false } });
  const g = tg.graph;
  const e = tg.emitter;
  const parameters = g.inputs.filter((v) => tg.report.parameters.includes(v.name));
  const scalarNames = Object.keys(optimizer.scalars(1, optimizer.learningRate(1)));
  const scalarInputs = new Map<string, string>();
  const scalar = (s: string) => {
    const name = stepName.scalar(s);
    if (!scalarNames.includes(s)) throw new Error(`optimizer ${optimizer.name} uses scalar '${s}' it does not feed`);
    if (!scalarInputs.has(s)) {
      scalarInputs.set(s, name);
      g.inputs.push({ name, type: { dtype: parameters[0].type.dtype, shape: [] } });
    }
    return name;
  };
  const updated: string[] = [];
  for (const p of parameters) {
    const grad = tg.grads.of(p.name);
    if (!grad) continue; // a parameter that does not reach the loss keeps its value, as in PyTorch
    updated.push(p.name);
    const state: Record<string, string> = {};
    for (const s of optimizer.stateNames) {
      state[s] = stepName.state(p.name, s);
      g.inputs.push({ name: state[s], type: p.type });
    }
    const update = optimizer.emitUpdate(e, { param: p.name, grad, state, scalar });
    g.add('Identity', [update.param], [], [stepName.newParam(p.name)]);
    g.outputs.push({ name: stepName.newParam(p.name), type: p.type });
    for (const s of optimizer.stateNames) {
      g.add('Identity', [update.state[s]], [], [stepName.newState(p.name, s)]);
      g.outputs.push({ name: stepName.newState(p.name, s), type: p.type });
    }
  }
  return { training: tg, parameters, updated, scalars: [...scalarInputs.keys()], model: g.toModel() };
}
