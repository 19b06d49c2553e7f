#!/usr/bin/python3
"""Seconds per step of a PyTorch K-BFGS and K-BFGS(L) on this machine, for issue 4's comparison
"their seconds per step on the same machine, against yours": the implementation that follows the
authors' step (scripts/fixtures/paper_optimizers_torch.py, L-BFGS in the compact form as their code applies
it) on the paper's autoencoder (models/mnist-autoencoder.onnx's weights), batch 1000 of the bundled
digits, float32, torch threads = CPU cores. The floor is one forward+backward pass of the same net,
as step-time.ts measures ours. Prints one JSON object.

    /usr/bin/python3 scripts/bench/torch-kbfgs-step.py [--steps 10]   # python3-torch, python3-onnx

Debian's torch calls the system BLAS (BLAS_INFO=generic): with only the reference libblas3 a
forward+backward takes seconds, so install an optimised one first (apt-get install
libopenblas0-pthread); "blas" in the output names the library in use.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
from paper_optimizers_torch import KBFGS, MLP, bce_per_sample_sum  # noqa: E402
from make_paper_optimizer_fixtures import bundled_digits  # noqa: E402


def autoencoder():
    """The Gemm layers of models/mnist-autoencoder.onnx, and those without a ReLU after them."""
    graph = onnx.load("models/mnist-autoencoder.onnx").graph
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    relu_inputs = {n.input[0] for n in graph.node if n.op_type == "Relu"}
    linear_after = [l for l, n in enumerate(gemms[:-1]) if n.output[0] not in relu_inputs]
    return [init[n.input[1]] for n in gemms], [init[n.input[2]] for n in gemms], linear_after


def median_seconds(fn, steps, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    steps = parser.parse_args().steps
    torch.set_num_threads(os.cpu_count())
    images, _ = bundled_digits(1000)
    x = torch.from_numpy(images.reshape(1000, 784).astype(np.float32) / 255)
    weights, biases, linear_after = autoencoder()

    floor_model = MLP(weights, biases, linear_after)

    def forward_backward():
        logits, _, _ = floor_model.forward(x)
        torch.autograd.grad(bce_per_sample_sum(logits, x), floor_model.params())

    result = {"bench": "torch-kbfgs-step", "model": "models/mnist-autoencoder.onnx", "batch": 1000, "dtype": "float32",
              "floor_s": median_seconds(forward_backward, steps)}
    for name, history in (("kbfgs", None), ("kbfgs-l", 100)):
        opt = KBFGS(MLP(weights, biases, linear_after), history=history, compact=True)
        opt.warm_start([x])
        result[f"{name}_s"] = median_seconds(lambda: opt.step(x, x), steps)
        result[f"{name}_ratio"] = result[f"{name}_s"] / result["floor_s"]
    blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    result["machine"] = {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas, "python": platform.python_version()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
