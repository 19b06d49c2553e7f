// What buildTrainingGraph says about graphs it cannot differentiate, and what it lets through.
import { expect } from 'chai';
import { buildTrainingGraph, GraphError, supportedOps, type onnx } from '../../../graph-tools/index.js';
import { createBackend } from '../../../lib/runtime/index.js';
import { computeGradients } from '../../../lib/train/gradients.js';
import { ModelBuilder } from '../../helpers/models.js';

const mse = { kind: 'mse', reduction: 'sum' } as const;

function thrown(model: onnx.ModelProto): Error {
  try {
    buildTrainingGraph(model, mse);
  } catch (e) {
    return e as Error;
  }
  throw new Error('buildTrainingGraph did not throw');
}

/** x → Gemm → `op` → output, the op's node named `${op}_1`. */
function layerThen(op: string, extraInputs: (b: ModelBuilder) => string[] = () => []): onnx.ModelProto {
  const b = new ModelBuilder(1);
  const h = b.gemm(b.input('x', ['N', 3], [4, 3]), 3, 4);
  return b.model(b.node(op, [h, ...extraInputs(b)]));
}

function expectUnsupportedOnPath(e: Error, node: string, op: string): void {
  expect(e).to.be.instanceOf(GraphError);
  expect(e.message).to.contain(`'${node}'`).and.to.contain(`(${op})`);
  expect(e.message).to.match(/no backward rule/);
  for (const s of supportedOps()) expect(e.message, `lists ${s}`).to.contain(s);
}

// Sin and Erf (which now has a rule) once failed in shape inference (every node was inferred before anything looked at
// the gradient path) instead of saying there is no backward rule.
/** Regression tests for bugs found while writing these specs (once pending, now fixed). */
const known = it;

describe('autodiff: unsupported graphs', () => {
  it('a BatchNormalization in training mode: names the node and says to export in eval mode', () => {
    const b = new ModelBuilder(1);
    const h = b.gemm(b.input('x', ['N', 3], [4, 3]), 3, 4);
    const c = (hint: string, v: number) => b.init(hint, [4], Array(4).fill(v));
    const y = b.node('BatchNormalization', [h, c('s', 1), c('b', 0), c('m', 0), c('v', 1)], [{ name: 'training_mode', type: 2, i: 1 }]);
    const e = thrown(b.model(b.gemm(y, 4, 2)));
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.contain("'BatchNormalization_").and.to.contain('training mode').and.to.contain('eval mode');
  });

  for (const [op, extra] of [['Floor', undefined], ['Round', undefined], ['Mod', (b: ModelBuilder) => [b.init('e', [], [2])]]] as const) {
    it(`${op} between a layer and the loss: names the node, the op and the supported ops`, () => {
      expectUnsupportedOnPath(thrown(layerThen(op, extra)), `${op}_1`, op);
    });
  }

  for (const op of ['Sin', 'Cos']) {
    it(`${op} between a layer and the loss: throws a GraphError naming the node and the op`, () => {
      const e = thrown(layerThen(op));
      expect(e).to.be.instanceOf(GraphError);
      expect(e.message).to.contain(`'${op}_1'`).and.to.contain(`(${op})`);
    });
    known(`${op} between a layer and the loss: says there is no backward rule and lists the supported ops`, () => {
      expectUnsupportedOnPath(thrown(layerThen(op)), `${op}_1`, op);
    });
  }

  it('an op without a backward rule deeper in the graph, after a supported op, is still found', () => {
    const b = new ModelBuilder(1);
    const h = b.node('Tanh', [b.gemm(b.input('x', ['N', 3], [4, 3]), 3, 4)]);
    const y = b.gemm(b.node('Floor', [h]), 4, 2);
    expectUnsupportedOnPath(thrown(b.model(y)), 'Floor_2', 'Floor');
  });

  it("a model without Gemm or MatMul layers: 'no trainable layer'", () => {
    const b = new ModelBuilder(1);
    const y = b.node('Tanh', [b.node('Add', [b.input('x', ['N', 3], [4, 3]), b.init('c', [3])])]);
    const e = thrown(b.model(y));
    expect(e).to.be.instanceOf(GraphError);
    expect(e.message).to.match(/no trainable layer/);
  });

  it("a Gemm whose weight is a data input is no layer: 'no trainable layer'", () => {
    const b = new ModelBuilder(1);
    const y = b.node('Gemm', [b.input('x', ['N', 3], [4, 3]), b.input('w', [3, 2], [3, 2])]);
    expect(thrown(b.model(y)).message).to.match(/no trainable layer/);
  });

  describe('ops off the gradient path are fine', () => {
    const check = async (model: onnx.ModelProto, inputs: Record<string, unknown>) => {
      const tg = buildTrainingGraph(model, mse);
      expect(tg.report.parameters).to.deep.equal(['W1', 'b1']);
      const b = new ModelBuilder(2);
      const r = await computeGradients(await createBackend('cpu'), model, {
        ...mse, inputs: inputs as never, target: { dtype: 'float32', dims: [4, 2], data: Float32Array.from(b.rng.array(8)) },
      });
      expect(Number.isFinite(r.loss)).to.equal(true);
      expect(Math.max(...Array.from(r.gradients.get('W1')!, Math.abs))).to.be.above(0);
    };

    it('Abs on an extra output computed from the input', async () => {
      const b = new ModelBuilder(1);
      const x = b.input('x', ['N', 3], [4, 3]);
      const y = b.gemm(x, 3, 2);
      await check(b.model([y, b.node('Abs', [x])]), b.data);
    });

    it('Abs between the input and the first layer', async () => {
      const b = new ModelBuilder(1);
      const y = b.gemm(b.node('Abs', [b.input('x', ['N', 3], [4, 3])]), 3, 2);
      await check(b.model(y), b.data);
    });

    known(`Sin on an extra output computed from the input`, async () => {
      const b = new ModelBuilder(1);
      const x = b.input('x', ['N', 3], [4, 3]);
      const y = b.gemm(x, 3, 2);
      await check(b.model([y, { name: b.node('Sin', [x]), shape: ['N', 3] }]), b.data);
    });

    known(`Erf between the input and the first layer`, async () => {
      const b = new ModelBuilder(1);
      const y = b.gemm(b.node('Erf', [b.input('x', ['N', 3], [4, 3])]), 3, 2);
      await check(b.model(y), b.data);
    });
  });
});
