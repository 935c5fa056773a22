#!/usr/bin/python3
"""Write the input half of a reference dump (docs/model.md "Reference dump").

  make_dump.py CONFIG OUT_DIR [--seed S] [--batch B] [--seq T]

OUT_DIR receives config.json (a copy of CONFIG), model.safetensors (every parameter, F32,
HF names) and inputs.safetensors (tokens, I32 [B, T+1]). tinyseek then adds
outputs.safetensors and compare.py checks it.

Initialisation follows docs/model.md with the std from the config's training.init_std
(the test configs use 0.2, far above the paper's 0.006, so that gradients are not
vanishingly small), with two deliberate departures that make the check sharper:
  * RMSNorm weights are 1 + N(0, norm_jitter²) instead of exactly 1, so that an
    implementation that forgets a norm weight (or its gradient scaling) is caught;
  * the router bias is N(0, bias_std²) instead of 0, so that the bias changes which
    experts are selected (and must still not change the gate values).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__ when run from CTest
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref  # noqa: E402
import safetensors_np  # noqa: E402


def make_weights(cfg, seed, norm_jitter=0.1, bias_std=0.1):
    """{name: float32 array} drawn in parameter_specs order from one seeded generator."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape, kind in deepseek_ref.parameter_specs(cfg):
        if kind == "norm":
            value = 1.0 + norm_jitter * rng.standard_normal(shape)
        elif kind == "router_bias":
            value = bias_std * rng.standard_normal(shape)
        else:  # linear, embedding, head, router weight
            value = cfg.init_std * rng.standard_normal(shape)
        weights[name] = value.astype(np.float32)
    return weights


def make_tokens(cfg, seed, batch, seq):
    rng = np.random.default_rng([seed, 1])
    return rng.integers(0, cfg.V, size=(batch, seq + 1)).astype(np.int32)


def write_dump(hf_config, out_dir, seed=1, batch=2, seq=12, norm_jitter=0.1, bias_std=0.1):
    """Write config.json, model.safetensors, inputs.safetensors; return (cfg, weights, tokens)."""
    cfg = deepseek_ref.config_from_dict(hf_config)
    if seq <= cfg.Dmtp:
        raise ValueError(f"--seq {seq} must exceed num_nextn_predict_layers {cfg.Dmtp}")
    weights = make_weights(cfg, seed, norm_jitter, bias_std)
    tokens = make_tokens(cfg, seed, batch, seq)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
        f.write("\n")
    safetensors_np.save(os.path.join(out_dir, "model.safetensors"), weights, {"format": "pt"})
    safetensors_np.save(os.path.join(out_dir, "inputs.safetensors"), {"tokens": tokens},
                        {"seed": seed})
    return cfg, weights, tokens


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="HF-style config.json with a training section")
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2, help="B (default 2)")
    ap.add_argument("--seq", type=int, default=12, help="T; tokens are [B, T+1] (default 12)")
    ap.add_argument("--norm-jitter", type=float, default=0.1, help="std of RMSNorm weights around 1")
    ap.add_argument("--bias-std", type=float, default=0.1, help="std of the router bias")
    args = ap.parse_args(argv)
    with open(args.config) as f:
        hf = json.load(f)
    try:
        cfg, weights, tokens = write_dump(hf, args.out_dir, args.seed, args.batch, args.seq,
                                          args.norm_jitter, args.bias_std)
    except ValueError as err:
        print(f"make_dump.py: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}: {len(weights)} parameters "
          f"({sum(w.size for w in weights.values())} values), tokens {list(tokens.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
