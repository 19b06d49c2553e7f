// The Optimizer interface. First-order methods describe their update of one parameter as a few
// elementwise ONNX ops; the Trainer fuses those into the training graph so that one session.run
// computes loss, gradients and new parameters, and parameters never leave ORT tensors.
import type { Emitter } from '../../graph-tools/index.js';
import type { LrSchedule } from './schedule.js';

export interface ParameterUpdateInputs {
  param: string;
  grad: string;
  /** Current optimizer state of this parameter, by state name. */
  state: Record<string, string>;
  /** Scalars fed every step (learning rate, bias corrections), by name. */
  scalar: (name: string) => string;
}

export interface ParameterUpdate {
  param: string;
  state: Record<string, string>;
}

export interface ElementwiseOptimizer {
  readonly kind: 'elementwise';
  readonly name: string;
  /** Hyper-parameters as given, for logs and checkpoints. */
  readonly options: Readonly<Record<string, number | boolean | string | LrSchedule | undefined>>;
  /** Per-parameter state tensors, each shaped like the parameter and zero at step 0. */
  readonly stateNames: readonly string[];
  /** A state started, before step 1, at the mean of the squared minibatch gradients over one pass (RMSprop's v). */
  readonly warmStartState?: string;
  /** Scalars for step t (1-based) at learning rate lr, computed in float64 in JavaScript. */
  scalars(t: number, lr: number): Record<string, number>;
  emitUpdate(e: Emitter, p: ParameterUpdateInputs): ParameterUpdate;
  /** The learning rate at step t (1-based): α times its `lrSchedule`'s factor (schedule.ts). */
  learningRate(t: number): number;
}

export type Optimizer = ElementwiseOptimizer;
