#!/usr/bin/python3
"""Compare a tinyseek reference dump against the independent PyTorch reference.

  compare.py DUMP_DIR [--rtol 1e-4] [--cos 0.99999] [--zero-atol 1e-12] [--failures-only]
  compare.py --self-test [--verbose]

DUMP_DIR holds config.json, model.safetensors, inputs.safetensors (make_dump.py or tinyseek)
and outputs.safetensors (written by tinyseek), see docs/model.md "Reference dump".
The reference recomputes forward and backward in float64 from the same F32 weights and
tokens; every output tensor is then checked:

  logits, logits_mtp.k, loss*, grad.*   rel = max|a−b| / max|b| ≤ rtol and cos(a, b) ≥ cos
                                        (scalars: rel only)
  load_counts.layer                     exact
  tensors whose reference is exactly 0  max|a| ≤ zero-atol (router bias grads, experts no
                                        token selected)

Missing tensors, unexpected grad.* tensors, wrong shapes and non-finite values fail too.
Exit status: 0 all pass, 1 some tensor fails (named in the summary), 2 unusable dump.

--self-test proves the pipeline without the C++ side: for each config in configs/ it writes
a dump whose outputs come from this reference run in float32, checks it passes against the
float64 run, checks the float64 gradients against central finite differences, and then
checks that deliberately wrong outputs (one perturbed gradient element, a non-zero router
bias gradient, a wrong load count, a missing gradient, and each defect of
deepseek_ref.KNOWN_BUGS) make the comparison fail.
"""

import argparse
import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__ when run from CTest
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref  # noqa: E402
import make_dump  # noqa: E402
import safetensors_np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = 1e-300  # floor of the relative-error denominator


class DumpError(Exception):
    """The dump cannot be compared at all (missing file, bad config, bad tokens)."""


def load_dump(dump_dir, need_outputs=True):
    def path(name):
        p = os.path.join(dump_dir, name)
        if not os.path.isfile(p):
            raise DumpError(f"{p} is missing (see docs/model.md 'Reference dump')")
        return p

    with open(path("config.json")) as f:
        hf = json.load(f)
    weights = safetensors_np.load(path("model.safetensors"))
    inputs = safetensors_np.load(path("inputs.safetensors"))
    if "tokens" not in inputs:
        raise DumpError(f"{dump_dir}/inputs.safetensors has no 'tokens' tensor")
    tokens = inputs["tokens"]
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise DumpError(f"tokens must be an integer [B, T+1] tensor, got {tokens.dtype} {list(tokens.shape)}")
    outputs = safetensors_np.load(path("outputs.safetensors")) if need_outputs else None
    return hf, weights, tokens, outputs


def reference(hf, weights, tokens, dtype=torch.float64, bugs=()):
    try:
        cfg = deepseek_ref.config_from_dict(hf)
        return deepseek_ref.run(cfg, weights, tokens, dtype, bugs)
    except ValueError as err:
        raise DumpError(str(err)) from err


# ---------------------------------------------------------------------------------------
# Tensor comparison
# ---------------------------------------------------------------------------------------

def group_of(name):
    if name.startswith("grad."):
        return "grads"
    if name.startswith("load_counts."):
        return "load_counts"
    if name.startswith("logits"):
        return "logits"
    return "losses"


def compare_tensor(name, got, ref, rtol, cos_min, zero_atol):
    """One table row: dict(name, shape, max_abs, max_ref, rel, cos, ok, note)."""
    row = dict(name=name, shape=list(ref.shape), max_abs=math.nan, max_ref=math.nan,
               rel=math.nan, cos=math.nan, ok=False, note="")
    if got is None:
        row["note"] = "missing from outputs.safetensors"
        return row
    if got.size != ref.size or (got.shape != ref.shape and ref.size != 1):
        row["note"] = f"shape {list(got.shape)}, expected {list(ref.shape)}"
        return row
    a = got.astype(np.float64).reshape(ref.shape)
    b = ref.astype(np.float64)
    if not np.all(np.isfinite(a)):
        row["note"] = "non-finite values"
        return row
    row["max_abs"] = float(np.abs(a - b).max()) if a.size else 0.0
    row["max_ref"] = float(np.abs(b).max()) if b.size else 0.0
    if name.startswith("load_counts."):
        row["ok"] = bool(np.array_equal(a, b))
        if not row["ok"]:
            row["note"] = f"counts {got.astype(int).tolist()} != reference {ref.astype(int).tolist()}"
        return row
    if row["max_ref"] == 0.0:
        row["ok"] = row["max_abs"] <= zero_atol
        row["note"] = "reference exactly 0"
        if not row["ok"]:
            row["note"] += f": max|got| {row['max_abs']:.3e} > {zero_atol:g}"
        return row
    row["rel"] = row["max_abs"] / max(row["max_ref"], TINY)
    ok = row["rel"] <= rtol
    if b.size > 1:
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        row["cos"] = float(np.dot(a.ravel(), b.ravel()) / norm) if norm > 0 else 0.0
        ok = ok and row["cos"] >= cos_min
    row["ok"] = bool(ok)
    if not ok:
        row["note"] = f"rel > {rtol:g}" if row["rel"] > rtol else f"cos < {cos_min}"
    return row


def compare_outputs(ref, got, rtol, cos_min, zero_atol):
    """rows (reference order), plus names of unexpected grad tensors in `got`."""
    rows = [compare_tensor(name, got.get(name), value, rtol, cos_min, zero_atol)
            for name, value in ref.items()]
    unexpected = sorted(n for n in got if n not in ref)
    for name in unexpected:
        if name.startswith("grad.") or name.startswith("load_counts.") or name.startswith("logits_mtp."):
            rows.append(dict(name=name, shape=list(got[name].shape), max_abs=math.nan, max_ref=math.nan,
                             rel=math.nan, cos=math.nan, ok=False,
                             note="not produced by the reference (wrong name or config?)"))
    return rows, [n for n in unexpected if not any(r["name"] == n for r in rows)]


def fmt(x, spec=".3e"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def print_table(rows, failures_only=False):
    width = max(len(r["name"]) for r in rows)
    print(f"{'':4} {'tensor':{width}} {'shape':>14} {'max|diff|':>10} {'max|ref|':>10} "
          f"{'rel':>10} {'cos':>12}  note")
    for r in rows:
        if failures_only and r["ok"]:
            continue
        shape = "x".join(str(s) for s in r["shape"]) or "scalar"
        print(f"{'ok' if r['ok'] else 'FAIL':4} {r['name']:{width}} {shape:>14} {fmt(r['max_abs']):>10} "
              f"{fmt(r['max_ref']):>10} {fmt(r['rel']):>10} {fmt(r['cos'], '.9f'):>12}  {r['note']}")


def summarise(rows):
    """{group: (count, failures, worst rel, min cos)}."""
    out = {}
    for r in rows:
        g = group_of(r["name"])
        n, bad, rel, cos = out.get(g, (0, 0, 0.0, 1.0))
        rel = max(rel, r["rel"]) if not math.isnan(r["rel"]) else rel
        cos = min(cos, r["cos"]) if not math.isnan(r["cos"]) else cos
        out[g] = (n + 1, bad + (not r["ok"]), rel, cos)
    return out


def print_summary(rows, ignored, routing, rtol, cos_min, zero_atol):
    print(f"\nthresholds: rel <= {rtol:g}, cos >= {cos_min}, exact-zero references: max|got| <= {zero_atol:g}, "
          f"load counts exact")
    for g, (n, bad, rel, cos) in summarise(rows).items():
        print(f"  {g:12} {n:4d} tensors, {bad:3d} failing, worst rel {rel:.3e}, min cos {cos:.9f}")
    for layer, diag in sorted(routing.items()):
        print(f"  routing layer {layer}: smallest selection margin (f64) expert {diag['expert_margin']:.3e}, "
              f"group {diag['group_margin']:.3e}  (a margin near FP32 rounding would make selection ambiguous)")
    if ignored:
        print(f"  ignored extra outputs: {', '.join(ignored)}")
    failing = [r["name"] for r in rows if not r["ok"]]
    if failing:
        print(f"FAIL: {len(failing)} of {len(rows)} tensors: {', '.join(failing)}")
    else:
        print(f"PASS: all {len(rows)} tensors")
    return not failing


def check_dump(dump_dir, rtol=1e-4, cos_min=0.99999, zero_atol=1e-12, verbose=True, failures_only=False):
    """Returns (passed, rows, routing)."""
    hf, weights, tokens, outputs = load_dump(dump_dir)
    ref, routing = reference(hf, weights, tokens)
    rows, ignored = compare_outputs(ref, outputs, rtol, cos_min, zero_atol)
    if verbose:
        print_table(rows, failures_only)
        passed = print_summary(rows, ignored, routing, rtol, cos_min, zero_atol)
    else:
        passed = all(r["ok"] for r in rows)
    return passed, rows, routing


# ---------------------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------------------

def write_outputs(dump_dir, outputs):
    safetensors_np.save(os.path.join(dump_dir, "outputs.safetensors"),
                        {k: (v.astype(np.int32) if k.startswith("load_counts.") else v.astype(np.float32))
                         for k, v in outputs.items()})


def finite_difference_check(hf, weights, tokens, grads, seed=7, eps=1e-6):
    """Directional derivative of the float64 loss along a random direction (all parameters
    at once): central difference vs Σ grad·direction. Returns the relative difference."""
    rng = np.random.default_rng(seed)
    direction = {n: rng.standard_normal(w.shape) for n, w in weights.items()}

    def loss_at(sign):
        moved = {n: w.astype(np.float64) + sign * eps * direction[n] for n, w in weights.items()}
        cfg = deepseek_ref.config_from_dict(hf)
        model = deepseek_ref.DeepSeekV3Ref(cfg, moved, torch.float64)
        with torch.no_grad():
            return model(tokens)["loss"].item()

    numeric = (loss_at(+1) - loss_at(-1)) / (2 * eps)
    analytic = sum(float((grads["grad." + n] * direction[n]).sum()) for n in weights)
    return abs(numeric - analytic) / max(abs(analytic), TINY), numeric, analytic


def expect_failure(label, dump_dir, outputs, expected_names, rtol, cos_min, zero_atol):
    """Write `outputs`, compare, and require failure (of exactly `expected_names` if given)."""
    write_outputs(dump_dir, outputs)
    passed, rows, _ = check_dump(dump_dir, rtol, cos_min, zero_atol, verbose=False)
    failing = [r["name"] for r in rows if not r["ok"]]
    good = not passed and (expected_names is None or failing == expected_names)
    shown = ", ".join(failing[:4]) + (f", ... ({len(failing)} in all)" if len(failing) > 4 else "")
    print(f"  {'ok ' if good else 'BAD'} {label:44} -> {'fails' if not passed else 'PASSES'}: {shown or '-'}")
    return good


def unit_checks():
    """The two reference ops most easily got subtly wrong, against independent formulations."""
    good = True
    # RoPE: the official code multiplies (x_2i + i·x_2i+1) by exp(i·pos·θ_i) as complex numbers.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 7, 3, 6, dtype=torch.float64, generator=g)  # [B, T, H, dr]
    theta = 10000.0 ** (-torch.arange(0, 6, 2, dtype=torch.float64) / 6)
    rot = torch.polar(torch.ones(7, 3, dtype=torch.float64), torch.arange(7.0, dtype=torch.float64)[:, None] * theta)
    as_complex = torch.view_as_complex(x.reshape(2, 7, 3, 3, 2).contiguous())
    expected = torch.view_as_real(as_complex * rot[None, :, None, :]).flatten(-2)
    err = (deepseek_ref.rope(x, 10000.0) - expected).abs().max().item()
    ok = err < 1e-14
    print(f"  {'ok ' if ok else 'BAD'} RoPE == complex multiplication by exp(i pos theta_i): max|diff| {err:.1e}")
    good &= ok
    # Routing by hand: groups of 2, group scores (top-2 sums) 1, 1, 0.875, 0.75 -> keep groups
    # 0 and 1 (tie: lower index); expert 4 (0.875, second largest overall) is masked out; among
    # 0.75, 0.25, 0.5, 0.5 the top-2 are expert 0 and expert 2 (tie with 3: lower index).
    choice = torch.tensor([[0.75, 0.25, 0.5, 0.5, 0.875, 0.0, 0.375, 0.375]], dtype=torch.float64)
    selected, _ = deepseek_ref.route(choice, K=2, n_group=4, topk_group=2)
    ok = selected.tolist() == [[0, 2]]
    # Without groups the same scores select experts 4 and 0.
    selected2, _ = deepseek_ref.route(choice, K=2, n_group=1, topk_group=1)
    ok2 = selected2.tolist() == [[4, 0]]
    print(f"  {'ok ' if ok and ok2 else 'BAD'} routing by hand: grouped {selected.tolist()} (expect [[0, 2]]), "
          f"ungrouped {selected2.tolist()} (expect [[4, 0]])")
    return good and ok and ok2


def self_test(rtol, cos_min, zero_atol, verbose):
    start = time.time()
    print("0. reference unit checks")
    all_good = unit_checks()
    tmp = tempfile.mkdtemp(prefix="tinyseek_ref_selftest_")
    try:
        print("1. reference run in float32 vs float64 (must pass), float64 gradients vs finite differences")
        dumps = {}
        for path in sorted(glob.glob(os.path.join(HERE, "configs", "*.json"))):
            name = os.path.splitext(os.path.basename(path))[0]
            with open(path) as f:
                hf = json.load(f)
            dump_dir = os.path.join(tmp, name)
            _, weights, tokens = make_dump.write_dump(hf, dump_dir, seed=1)
            out32, _ = reference(hf, weights, tokens, torch.float32)
            write_outputs(dump_dir, out32)
            if verbose:
                print(f"--- {name}")
            passed, rows, routing = check_dump(dump_dir, rtol, cos_min, zero_atol, verbose=verbose)
            ref64, _ = reference(hf, weights, tokens)
            fd_rel, numeric, analytic = finite_difference_check(hf, weights, tokens, ref64)
            fd_ok = fd_rel < 1e-7
            all_good &= passed and fd_ok
            summary = summarise(rows)
            parts = [f"{g} rel {rel:.2e}" for g, (_, _, rel, _) in summary.items()]
            min_cos = min(c for (_, _, _, c) in summary.values())
            zeros = sum(1 for r in rows if r["note"].startswith("reference exactly 0"))
            print(f"  {'ok ' if passed else 'BAD'} {name:10} {len(rows):3d} tensors, {', '.join(parts)}, "
                  f"min cos {min_cos:.9f}, {zeros} exact-zero grads")
            print(f"  {'ok ' if fd_ok else 'BAD'} {'':10} finite difference: dL/d(dir) numeric {numeric:.10e} "
                  f"autograd {analytic:.10e} rel {fd_rel:.1e} (< 1e-7)")
            dumps[name] = (hf, weights, tokens, out32, dump_dir)

        print("2. wrong outputs must fail (MTP-2 + MoE config)")
        hf, weights, tokens, out32, dump_dir = dumps["mtp2"]
        target = "grad.model.layers.1.self_attn.kv_b_proj.weight"
        bad = dict(out32)
        bad[target] = out32[target].copy()
        bad[target].flat[5] += 1e-3 * np.abs(out32[target]).max()
        all_good &= expect_failure(f"one element of one gradient off by 1e-3*max", dump_dir, bad, [target],
                                   rtol, cos_min, zero_atol)
        bias = "grad.model.layers.2.mlp.gate.e_score_correction_bias"
        bad = dict(out32)
        bad[bias] = out32[bias].copy()
        bad[bias][0] = 1e-6
        all_good &= expect_failure("router bias gradient 1e-6 instead of 0", dump_dir, bad, [bias],
                                   rtol, cos_min, zero_atol)
        counts = "load_counts.3"
        bad = dict(out32)
        bad[counts] = out32[counts].copy()
        bad[counts][:2] += np.array([1, -1], np.int32)
        all_good &= expect_failure("one token counted on the wrong expert", dump_dir, bad, [counts],
                                   rtol, cos_min, zero_atol)
        missing = "grad.model.layers.3.eh_proj.weight"
        bad = {k: v for k, v in out32.items() if k != missing}
        all_good &= expect_failure("a gradient missing", dump_dir, bad, [missing], rtol, cos_min, zero_atol)
        bad = dict(out32)
        bad["loss_mtp.2"] = out32["loss_mtp.2"] * (1 + 1e-3)
        all_good &= expect_failure("loss_mtp.2 off by 1e-3 relative", dump_dir, bad, ["loss_mtp.2"],
                                   rtol, cos_min, zero_atol)

        print("3. outputs of a reference with one injected defect must fail")
        for bug, what in deepseek_ref.KNOWN_BUGS.items():
            config = "moe_group" if bug.startswith("gate") or bug.startswith("balance") else "mtp2"
            hf, weights, tokens, _, dump_dir = dumps[config]
            wrong, _ = reference(hf, weights, tokens, torch.float32, bugs=[bug])
            all_good &= expect_failure(f"{bug} ({config})", dump_dir, wrong, None, rtol, cos_min, zero_atol)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"self-test {'PASSED' if all_good else 'FAILED'} in {time.time() - start:.1f} s")
    return 0 if all_good else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump_dir", nargs="?")
    ap.add_argument("--rtol", type=float, default=1e-4, help="max of max|a-b|/max|b| (default 1e-4)")
    ap.add_argument("--cos", type=float, default=0.99999, help="min cosine similarity (default 0.99999)")
    ap.add_argument("--zero-atol", type=float, default=1e-12,
                    help="max |value| where the reference is exactly zero (default 1e-12)")
    ap.add_argument("--failures-only", action="store_true", help="print only failing rows of the table")
    ap.add_argument("--self-test", action="store_true", help="prove the pipeline without tinyseek")
    ap.add_argument("--verbose", action="store_true", help="self-test: print every table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead and run-to-run noise
    try:
        if args.self_test:
            return self_test(args.rtol, args.cos, args.zero_atol, args.verbose)
        if not args.dump_dir:
            ap.error("DUMP_DIR is required (or --self-test)")
        passed, _, _ = check_dump(args.dump_dir, args.rtol, args.cos, args.zero_atol,
                                  failures_only=args.failures_only)
    except DumpError as err:
        print(f"compare.py: {err}", file=sys.stderr)
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
