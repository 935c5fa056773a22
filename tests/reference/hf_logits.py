"""Logits of a Hugging Face DeepSeek-V3 directory (as `tinyseek export` writes it), computed by
the independent float64 reference (deepseek_ref.py).

    hf_logits.py EXPORT_DIR TOKENS.safetensors OUT.safetensors

EXPORT_DIR holds config.json and model.safetensors in the released DeepSeek-V3 layout
(../shared/reference/deepseek-v3.md §7): BF16 or F32 tensors, or F8_E4M3 weights with an F32
`<name>_scale_inv` of shape [ceil(out/128), ceil(in/128)]; the dequantized weight is the
E4M3 value times the scale of its 128x128 block (partial blocks at the right and bottom
edges). The MTP layer's copies of `embed_tokens` and `shared_head.head` must equal the
shared tensors (the reference, like the paper, shares them). Dimensions come from
config.json only.

TOKENS holds "tokens" (I32 [B, T+1]); OUT receives "logits" (F64 [B, T, V]) and
"logits_mtp.k" (F64 [B, T-k, V]). Exit 0 on success, 2 on an unusable directory.
"""

import json
import os
import sys

import numpy as np

import deepseek_ref
import safetensors_np

BLOCK = 128


def dequantize_block_fp8(values, scale_inv, name):
    """values: [N, K] float32 decoded from E4M3; scale_inv: [ceil(N/128), ceil(K/128)]."""
    N, K = values.shape
    expected = (-(-N // BLOCK), -(-K // BLOCK))
    if scale_inv.shape != expected:
        raise ValueError(f"{name}_scale_inv has shape {list(scale_inv.shape)}, expected {list(expected)} "
                         f"for a [{N}, {K}] weight in 128x128 blocks")
    per_element = np.repeat(np.repeat(scale_inv.astype(np.float64), BLOCK, axis=0), BLOCK, axis=1)[:N, :K]
    return values.astype(np.float64) * per_element


def load_export(directory):
    """-> (hf config dict, {name: float64 array} without scales or MTP copies, {dtype: count})."""
    with open(os.path.join(directory, "config.json")) as f:
        hf = json.load(f)
    path = os.path.join(directory, "model.safetensors")
    header, _ = safetensors_np.read_header(path)
    raw = safetensors_np.load(path)  # BF16 / F8 decoded exactly to float32
    dtypes = {}
    weights = {}
    for name, info in header.items():
        if name == "__metadata__" or name.endswith("_scale_inv"):
            continue
        dtypes[info["dtype"]] = dtypes.get(info["dtype"], 0) + 1
        if info["dtype"] == "F8_E4M3":
            if name + "_scale_inv" not in raw:
                raise ValueError(f"{name} is F8_E4M3 but has no {name}_scale_inv")
            weights[name] = dequantize_block_fp8(raw[name], raw[name + "_scale_inv"], name)
        else:
            weights[name] = raw[name].astype(np.float64)
    quant = hf.get("quantization_config")
    if dtypes.get("F8_E4M3") and (not quant or quant.get("weight_block_size") != [BLOCK, BLOCK]
                                  or quant.get("fmt") != "e4m3"):
        raise ValueError(f"F8_E4M3 tensors but config.json quantization_config is {quant}")
    L = int(hf["num_hidden_layers"])
    for k in range(int(hf.get("num_nextn_predict_layers") or 0)):
        p = f"model.layers.{L + k}."
        for copy, shared in ((p + "embed_tokens.weight", "model.embed_tokens.weight"),
                             (p + "shared_head.head.weight", "lm_head.weight")):
            if copy in weights:
                if not np.array_equal(weights.pop(copy), weights[shared]):
                    raise ValueError(f"{copy} differs from {shared}")
    return hf, weights, dtypes


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    directory, tokens_path, out_path = argv[1:]
    try:
        hf, weights, dtypes = load_export(directory)
        cfg = deepseek_ref.config_from_dict(hf)
        tokens = safetensors_np.load(tokens_path)["tokens"].astype(np.int64)
        model = deepseek_ref.DeepSeekV3Ref(cfg, weights)
    except (OSError, KeyError, ValueError) as e:
        print(f"hf_logits.py: {e}", file=sys.stderr)
        return 2
    import torch
    with torch.no_grad():
        out = model(tokens)
    result = {"logits": out["logits"].numpy()}
    for k, logits in enumerate(out["logits_mtp"], start=1):
        result[f"logits_mtp.{k}"] = logits.numpy()
    safetensors_np.save(out_path, result)
    print(f"hf_logits.py: {directory}: {sum(dtypes.values())} tensors {dtypes}, tokens {list(tokens.shape)}, "
          f"logits {list(result['logits'].shape)}, {len(out['logits_mtp'])} MTP heads")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
