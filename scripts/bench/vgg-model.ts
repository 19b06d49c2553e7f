// A VGG-style CNN built in code for the memory benchmark: wide 3×3 convolutions are where the
// Kronecker factors grow (d_a = 9·C_in + 1), which the small ResNet does not show.
import { A, Graph, type onnx, type TensorData } from '../../graph-tools/index.js';
import { mulberry32 } from '../../lib/data/index.js';

export interface VggOptions {
  /** Conv widths in order; 'M' is a 2×2 max-pool. */
  channels?: Array<number | 'M'>;
  inputSize?: number;
  inChannels?: number;
  classes?: number;
  seed?: number;
}

/**
 * Input 'input' [N, inChannels, inputSize, inputSize], output 'logits' [N, classes]: Conv 3×3
 * (pad 1) + bias + Relu per width, MaxPool 2×2 at each 'M', then GlobalAveragePool, Flatten and a
 * Gemm (transB=1). Pooling to C features keeps the classifier's A factor (C+1)² rather than
 * (C·H·W+1)², which would dwarf every conv layer. He-initialised weights, zero biases.
 */
export function buildVggStyle(o: VggOptions = {}): onnx.ModelProto {
  const { channels = [128, 128, 'M', 256, 256, 'M'], inputSize = 32, inChannels = 3, classes = 10, seed = 0 } = o;
  const uniform = mulberry32(seed);
  // Box–Muller: He initialisation wants normal draws with std √(2 / fan_in).
  const he = (dims: number[], fanIn: number): TensorData => {
    const std = Math.sqrt(2 / fanIn);
    const data = new Float32Array(dims.reduce((a, d) => a * d, 1));
    for (let i = 0; i < data.length; i++) data[i] = std * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
    return { dtype: 'float32', dims, data };
  };
  const zeros = (n: number): TensorData => ({ dtype: 'float32', dims: [n], data: new Float32Array(n) });

  const g = new Graph();
  g.name = 'vgg-style';
  g.opset = 13;
  const input = { name: 'input', type: { dtype: 'float32' as const, shape: ['N', inChannels, inputSize, inputSize] } };
  g.inputs.push(input);
  g.types.set(input.name, input.type);
  g.fresh(input.name);

  let x = input.name;
  let c = inChannels;
  channels.forEach((width, i) => {
    if (width === 'M') {
      x = g.op('MaxPool', [x], [A.ints('kernel_shape', [2, 2]), A.ints('strides', [2, 2])], `pool${i}`);
      return;
    }
    const w = g.addInitializer(`conv${i}.weight`, he([width, c, 3, 3], c * 9));
    const b = g.addInitializer(`conv${i}.bias`, zeros(width));
    x = g.op('Relu', [g.op('Conv', [x, w, b], [A.ints('kernel_shape', [3, 3]), A.ints('pads', [1, 1, 1, 1])], `conv${i}`)], [], `relu${i}`);
    c = width;
  });
  const features = g.op('Flatten', [g.op('GlobalAveragePool', [x], [], 'gap')], [], 'flatten');
  const w = g.addInitializer('fc.weight', he([classes, c], c));
  const b = g.addInitializer('fc.bias', zeros(classes));
  g.add('Gemm', [features, w, b], [A.int('transB', 1)], ['logits'], 'fc');
  g.outputs.push({ name: 'logits', type: { dtype: 'float32', shape: ['N', classes] } });
  return g.toModel();
}
