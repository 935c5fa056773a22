#!/usr/bin/env python3
"""PyTorch baseline of `tinyseek bench step`: trains the independent PyTorch reference model
(tests/reference/deepseek_ref.py, the model tinyseek is checked against) on the same config,
batch and sequence length, and reports tokens/s.

One timed step = opt.zero_grad(); loss = model(tokens)["loss"]; loss.backward(); opt.step()
with torch.optim.AdamW (FP32 master weights and moments), the same work as tinyseek's step.
Precision: fp32, or bf16 (torch.autocast on CPU: matmuls in BF16, weights and optimizer FP32).

Output: one JSON line {"tokens_per_s", "ms_per_step", "peak_rss_mb", ...} (--json) or a
sentence. Threads: --threads (default 2). Set the environment before starting Python (see
bench/peers/step_compare.sh): OMP_WAIT_POLICY=PASSIVE, OPENBLAS_CORETYPE unset — the tuned
settings of ../shared/reference/machine.md.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import deepseek_ref  # noqa: E402


def init_weights(cfg, std, seed):
    """N(0, std²) for matrices, 1 for norms, 0 for the router bias (docs/model.md)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape, kind in deepseek_ref.parameter_specs(cfg):
        if kind == "norm":
            weights[name] = np.ones(shape, dtype=np.float32)
        elif kind == "router_bias":
            weights[name] = np.zeros(shape, dtype=np.float32)
        else:
            weights[name] = (rng.standard_normal(shape) * std).astype(np.float32)
    return weights


class AutocastRef(deepseek_ref.DeepSeekV3Ref):
    """The reference under BF16 autocast: its MoE scatters expert outputs with index_add into
    an FP32 buffer, which refuses BF16 sources, so expert outputs are cast back to FP32 (what
    a mixed-precision MoE does anyway). Nothing else differs."""

    def swiglu(self, x, prefix):
        return super().swiglu(x, prefix).float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    with open(a.config) as f:
        hf = json.load(f)
    cfg = deepseek_ref.config_from_dict(hf)
    std = hf.get("training", {}).get("init_std", 0.006)
    cls = AutocastRef if a.precision == "bf16" else deepseek_ref.DeepSeekV3Ref
    model = cls(cfg, init_weights(cfg, std, a.seed), dtype=torch.float32)
    trained = [p for n, p in model.params.items() if not n.endswith("e_score_correction_bias")]
    opt = torch.optim.AdamW(trained, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    rng = np.random.default_rng(a.seed + 7)
    tokens = rng.integers(0, cfg.V, size=(a.batch, a.seq + 1), dtype=np.int64)

    times, losses = [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if a.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(tokens)["loss"]
        else:
            loss = model(tokens)["loss"]
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(float(loss))
        if step >= a.warmup:
            times.append(dt)
    ms = statistics.median(times) * 1e3
    result = {
        "tokens_per_s": a.batch * a.seq / (ms * 1e-3),
        "ms_per_step": ms,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "precision": a.precision,
        "threads": a.threads,
        "batch": a.batch,
        "seq": a.seq,
        "steps": a.steps,
        "torch": torch.__version__,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "step_ms": [round(t * 1e3, 1) for t in times],
    }
    if a.json:
        print(json.dumps(result))
    else:
        print(f"pytorch {a.precision}: {result['tokens_per_s']:.0f} tokens/s, {ms:.1f} ms/step "
              f"(B {a.batch} x T {a.seq}, {a.threads} threads), peak RSS {result['peak_rss_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
