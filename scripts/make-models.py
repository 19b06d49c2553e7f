#!/usr/bin/python3
"""Build the ONNX models bundled in models/ (shipped with the npm package).

Run with Debian's python (needs python3-torch and python3-onnx; torch 1.13, onnx 1.12):

    /usr/bin/python3 scripts/make-models.py                      # all models
    /usr/bin/python3 scripts/make-models.py mnist-autoencoder    # just one
    /usr/bin/python3 scripts/make-models.py --list

To add a model: write a builder `def build_<x>() -> ModelSpec` and register it in MODELS.
Every model is exported float32 with a dynamic batch dim "N", checked with onnx.checker,
and (if `expect_ops` is given) checked to contain exactly the expected op types/counts.
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


MODELS: Dict[str, Callable[[], ModelSpec]] = {
    "mnist-autoencoder": build_mnist_autoencoder,
}


def export(name: str, spec: ModelSpec, out_dir: str) -> str:
    model = spec.module.eval()
    names = list(spec.inputs)
    args = tuple(torch.zeros(*spec.inputs[k], dtype=torch.float32) for k in names)
    dyn = {k: {0: "N"} for k in names + spec.outputs}
    buf = io.BytesIO()
    torch.onnx.export(model, args, buf, opset_version=spec.opset, input_names=names,
                      output_names=spec.outputs, dynamic_axes=dyn, do_constant_folding=True)
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
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
