#!/usr/bin/python3
"""Build the ONNX models bundled in models/ (shipped with the npm package).

Run with Debian's python (needs python3-torch and python3-onnx; torch 1.13, onnx 1.12):

    /usr/bin/python3 scripts/make-models.py                      # all models
    /usr/bin/python3 scripts/make-models.py mnist-autoencoder    # just one
    /usr/bin/python3 scripts/make-models.py --list

To add a model: write a builder `def build_<x>() -> ModelSpec` and register it in MODELS.
Every model is exported float32 with a dynamic batch dim "N", checked with onnx.checker,
and (if `expect_ops` is given) checked to contain exactly the expected op types/counts.
Models are exported from eval(); by default (training=TrainingMode.EVAL) the exporter folds a
BatchNorm that follows a Conv into the Conv. `keep_batchnorm=True` keeps the
BatchNormalization nodes instead (see export()).
"""
import argparse
import collections
import io
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import onnx
import torch
import torch.nn as nn

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MODELS_DIR = os.path.join(REPO, "models")


@dataclass
class ModelSpec:
    module: nn.Module
    # input name -> example shape (dim 0 is the dynamic batch dim "N")
    inputs: Dict[str, Tuple[int, ...]]
    outputs: List[str]
    opset: int = 17
    # op type -> expected number of nodes; graph must contain exactly these op types
    expect_ops: Optional[Dict[str, int]] = None
    # rough expected file size in bytes (checked within +-5%)
    expect_bytes: Optional[int] = None
    description: str = ""
    # keep BatchNormalization nodes (inference form, training_mode=0) instead of letting the
    # exporter fold them into the preceding Conv, so they can be trained later
    keep_batchnorm: bool = False


def mlp(widths: List[int], linear_after: Tuple[int, ...] = ()) -> nn.Sequential:
    """Linear layers widths[0]->widths[1]->...; ReLU after every layer except the last and
    except the layers whose index (0-based) is in linear_after."""
    layers: List[nn.Module] = []
    n = len(widths) - 1
    for i in range(n):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i != n - 1 and i not in linear_after:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_mnist_autoencoder() -> ModelSpec:
    """K-BFGS paper (Goldfarb, Ren & Bahamou 2020) MNIST autoencoder
    784-1000-500-250-30-250-500-1000-784; ReLU everywhere except the 30-unit code layer and
    the output layer (logits, to be used with a sigmoid / BCE-with-logits loss)."""
    torch.manual_seed(0)
    widths = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    model = mlp(widths, linear_after=(3,))  # layer 3 = 250->30 code layer
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    return ModelSpec(
        module=model,
        inputs={"input": (2, 784)},
        outputs=["logits"],
        opset=17,
        expect_ops={"Gemm": 8, "Relu": 6},
        expect_bytes=4 * n_params,
        description="MNIST autoencoder 784-1000-500-250-30-250-500-1000-784 (K-BFGS paper)",
    )


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)   # 28x28 -> 28x28
        self.pool1 = nn.MaxPool2d(2)                 # -> 14x14
        self.conv2 = nn.Conv2d(6, 16, 5)             # -> 10x10
        self.pool2 = nn.MaxPool2d(2)                 # -> 5x5
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def build_lenet5() -> ModelSpec:
    """LeNet-5 style CNN for 28x28x1 inputs: conv5x5(6, pad 2)-relu-maxpool-conv5x5(16)-relu-maxpool-400-120-84-10."""
    torch.manual_seed(0)
    model = LeNet5()
    n_params = sum(p.numel() for p in model.parameters())
    return ModelSpec(
        module=model,
        inputs={"input": (2, 1, 28, 28)},
        outputs=["logits"],
        opset=17,
        expect_ops={"Conv": 2, "Relu": 4, "MaxPool": 2, "Flatten": 1, "Gemm": 3},
        expect_bytes=4 * n_params,
        description="LeNet-5 style CNN for MNIST (28x28x1 -> 10 logits)",
    )


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN + shortcut -> ReLU. The shortcut is the
    identity, or conv1x1(stride)-BN when the block changes the width or resolution."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: Optional[nn.Module] = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))


class ResNetSmall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))   # 28x28
        self.layer2 = nn.Sequential(BasicBlock(16, 32, stride=2))            # -> 14x14
        self.pool = nn.AdaptiveAvgPool2d(1)                                  # GlobalAveragePool
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_resnet_small() -> ModelSpec:
    """Small ResNet for 28x28x1 inputs: conv3x3(16)-BN-ReLU, 2 basic blocks (16), 1 downsampling block (32, stride 2, 1x1 conv+BN shortcut), GAP, 32-10; BatchNormalization nodes kept."""
    torch.manual_seed(0)
    model = ResNetSmall()
    n_floats = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return ModelSpec(
        module=model,
        inputs={"input": (2, 1, 28, 28)},
        outputs=["logits"],
        opset=17,
        expect_ops={"Conv": 8, "BatchNormalization": 8, "Relu": 7, "Add": 3,
                    "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1},
        expect_bytes=4 * n_floats + 7_000,  # ~7 kB of graph structure at this size
        description="small ResNet for MNIST (28x28x1 -> 10 logits), BatchNorm kept",
        keep_batchnorm=True,
    )


MODELS: Dict[str, Callable[[], ModelSpec]] = {
    "mnist-autoencoder": build_mnist_autoencoder,
    "lenet5": build_lenet5,
    "resnet-small": build_resnet_small,
}


def untie_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Undo the exporter's de-duplication of initializers. An eval-mode export replaces every
    initializer whose VALUE equals an earlier one by Identity(earlier); with PyTorch's default
    BatchNorm init that ties e.g. bn1.weight, bn1.running_var and bn2.weight (all ones) and
    bn1.bias / running_mean (all zeros) together. Each Identity output (named after the
    original parameter) becomes an initializer of its own again; initializers are ordered by
    first use."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    for n in [n for n in g.node if n.op_type == "Identity" and n.input[0] in inits]:
        t = onnx.TensorProto()
        t.CopyFrom(inits[n.input[0]])
        t.name = n.output[0]
        inits[t.name] = t
        g.node.remove(n)
    order: List[str] = []
    for n in g.node:
        order += [i for i in n.input if i in inits and i not in order]
    del g.initializer[:]
    g.initializer.extend(inits[k] for k in order)
    return proto


def export(name: str, spec: ModelSpec, out_dir: str) -> str:
    model = spec.module.eval()
    names = list(spec.inputs)
    args = tuple(torch.zeros(*spec.inputs[k], dtype=torch.float32) for k in names)
    dyn = {k: {0: "N"} for k in names + spec.outputs}
    if spec.keep_batchnorm:
        # training=EVAL (the default) folds Conv+BatchNorm in the exporter's eval peephole
        # pass, whether or not constant folding is on; PRESERVE on an eval() model keeps the
        # BatchNormalization nodes (in inference form).
        kw = dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        kw = dict(do_constant_folding=True)
    buf = io.BytesIO()
    torch.onnx.export(model, args, buf, opset_version=spec.opset, input_names=names,
                      output_names=spec.outputs, dynamic_axes=dyn, **kw)
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
    if spec.keep_batchnorm:
        proto = untie_initializers(proto)
        data = proto.SerializeToString()
        for n in proto.graph.node:
            if n.op_type == "BatchNormalization":
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                assert attrs.get("training_mode", 0) == 0 and len(n.output) == 1
        bn_inputs = [i for n in proto.graph.node if n.op_type == "BatchNormalization" for i in n.input[1:]]
        assert len(bn_inputs) == len(set(bn_inputs)), "BatchNorm parameters are shared"
    onnx.checker.check_model(proto, full_check=True)

    # sanity checks
    for init in proto.graph.initializer:
        assert init.data_type == onnx.TensorProto.FLOAT, f"{init.name} is not float32"
    for vi in list(proto.graph.input) + list(proto.graph.output):
        d0 = vi.type.tensor_type.shape.dim[0]
        assert d0.dim_param == "N", f"{vi.name}: batch dim is not dynamic"
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    if spec.expect_ops is not None:
        assert dict(ops) == spec.expect_ops, f"unexpected ops {dict(ops)} != {spec.expect_ops}"
    if spec.expect_bytes is not None:
        assert abs(len(data) - spec.expect_bytes) < 0.05 * spec.expect_bytes, \
            f"size {len(data)} far from expected {spec.expect_bytes}"

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.onnx")
    with open(path, "wb") as f:
        f.write(data)

    def shape(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    print(f"{path}: {len(data)} bytes ({len(data) / 1e6:.2f} MB), opset {spec.opset}")
    print(f"  inputs:  {[(vi.name, shape(vi)) for vi in proto.graph.input]}")
    print(f"  outputs: {[(vi.name, shape(vi)) for vi in proto.graph.output]}")
    print(f"  ops:     {dict(ops)}")
    print(f"  initializers: {', '.join(f'{i.name}{list(i.dims)}' for i in proto.graph.initializer)}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="models to build (default: all)")
    ap.add_argument("--out", default=MODELS_DIR, help="output folder (default: models/)")
    ap.add_argument("--list", action="store_true", help="list the available models")
    args = ap.parse_args()
    if args.list:
        for k, fn in MODELS.items():
            print(f"{k}: {(fn.__doc__ or '').strip().splitlines()[0]}")
        return
    names = args.models or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; available: {list(MODELS)}")
    print(f"torch {torch.__version__}, onnx {onnx.__version__}")
    for n in names:
        export(n, MODELS[n](), args.out)


if __name__ == "__main__":
    sys.exit(main())
