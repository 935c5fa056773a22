#!/usr/bin/env python3
"""Independent AdamW references for tests/train/adamw_test.cc.

Reads DIR/meta.json, DIR/params0.bin (float32 [n]) and DIR/grads.bin (float32 [steps, n]),
runs `steps` updates with per-step lr and gradient scale (the clip factor) three ways and
writes the final parameters and moments:

  torch_*  torch.optim.AdamW, FP32 moments (decay group / no-decay group; the router bias
           is not given to the optimizer at all). Gradients are scaled as
           torch.nn.utils.clip_grad_norm_ does (in place, by a float32 factor).
  np32_*   the update written out in numpy float32 in the order docs of adamw.h give,
           one rounding per operation: the C++ FP32 path must match it bit for bit.
  bf16_*   the same with the moments rounded to BF16 (round-to-nearest-even via
           torch's .to(torch.bfloat16)) after every update, the parameter update using the
           rounded moments: the C++ BF16 path must match it bit for bit.

Which tensors decay is decided here from the role names, not taken from the C++ side:
decay = linear, embedding, head, router, mtp_proj; no decay = norm; router_bias untouched.
Also writes out.json with torch's global gradient norm (float32) of each step.
"""
import json
import math
import sys

import numpy as np
import torch

DECAY_ROLES = {"linear", "embedding", "head", "router", "mtp_proj"}
NO_DECAY_ROLES = {"norm"}


def bf16_round(x):
    return torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()


def bf16_bits(x):
    return torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def main(d):
    meta = json.load(open(f"{d}/meta.json"))
    n, steps = meta["n"], meta["steps"]
    p0 = np.fromfile(f"{d}/params0.bin", dtype=np.float32)
    grads = np.fromfile(f"{d}/grads.bin", dtype=np.float32).reshape(steps, n)
    b1, b2, eps, wd = meta["beta1"], meta["beta2"], meta["eps"], meta["weight_decay"]
    tensors = meta["tensors"]
    for t in tensors:
        assert t["role"] in DECAY_ROLES | NO_DECAY_ROLES | {"router_bias"}, t["role"]
    trained = [t for t in tensors if t["role"] != "router_bias"]

    # --- torch.optim.AdamW -----------------------------------------------------------------
    torch.set_num_threads(1)
    tp = {t["name"]: torch.nn.Parameter(torch.from_numpy(p0[t["offset"]:t["offset"] + t["numel"]].copy()))
          for t in trained}
    groups = [
        {"params": [tp[t["name"]] for t in trained if t["role"] in DECAY_ROLES], "weight_decay": wd},
        {"params": [tp[t["name"]] for t in trained if t["role"] in NO_DECAY_ROLES], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=meta["lrs"][0], betas=(b1, b2), eps=eps)
    norms = []
    for k in range(steps):
        for t in trained:
            tp[t["name"]].grad = torch.from_numpy(grads[k, t["offset"]:t["offset"] + t["numel"]].copy())
        params = [tp[t["name"]] for t in trained]
        # max_norm = inf: only the norm; the factor the C++ side used is applied below so both
        # sides scale by the same float32 number.
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, float("inf"))))
        for q in params:
            q.grad.mul_(torch.tensor(meta["scales"][k], dtype=torch.float32))
        for g in opt.param_groups:
            g["lr"] = meta["lrs"][k]
        opt.step()
    out_p = p0.copy()
    out_m = np.zeros(n, np.float32)
    out_v = np.zeros(n, np.float32)
    for t in trained:
        s = slice(t["offset"], t["offset"] + t["numel"])
        q = tp[t["name"]]
        out_p[s] = q.detach().numpy()
        out_m[s] = opt.state[q]["exp_avg"].numpy()
        out_v[s] = opt.state[q]["exp_avg_sq"].numpy()
    out_p.tofile(f"{d}/torch_params.bin")
    out_m.tofile(f"{d}/torch_m.bin")
    out_v.tofile(f"{d}/torch_v.bin")

    # --- numpy float32 mirror, FP32 and BF16 moments -------------------------------------------
    f32 = np.float32
    for tag, bf16 in (("np32", False), ("bf16", True)):
        p = p0.copy()
        m = np.zeros(n, f32)
        v = np.zeros(n, f32)
        for k in range(steps):
            t_ = k + 1
            lr = meta["lrs"][k]
            beta1, omb1, beta2, omb2 = f32(b1), f32(1.0 - b1), f32(b2), f32(1.0 - b2)
            decay_mul = f32(1.0 - lr * wd)
            neg_ss = f32(-(lr / (1.0 - b1 ** t_)))
            bc2s = f32(math.sqrt(1.0 - b2 ** t_))
            for t in trained:
                s = slice(t["offset"], t["offset"] + t["numel"])
                g = grads[k, s] * f32(meta["scales"][k])
                ms = m[s] * beta1 + omb1 * g
                vs = v[s] * beta2 + (omb2 * g) * g
                if bf16:
                    ms, vs = bf16_round(ms), bf16_round(vs)
                m[s], v[s] = ms, vs
                ps = p[s]
                if t["role"] in DECAY_ROLES:
                    ps = ps * decay_mul
                denom = np.sqrt(vs) / bc2s + f32(eps)
                p[s] = ps + (neg_ss * ms) / denom
        p.tofile(f"{d}/{tag}_params.bin")
        if bf16:
            bf16_bits(m).tofile(f"{d}/{tag}_m.bin")
            bf16_bits(v).tofile(f"{d}/{tag}_v.bin")
        else:
            m.tofile(f"{d}/{tag}_m.bin")
            v.tofile(f"{d}/{tag}_v.bin")
    json.dump({"torch_grad_norms": norms}, open(f"{d}/out.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1])
