"""Independent PyTorch reference of the DeepSeek-V3 architecture (forward; autograd backward).

Written from the formulas in docs/model.md and ../shared/reference/deepseek-v3.md, not from
the C++ sources: every op below is the textbook formula in plain tensor algebra, and
gradients come from torch autograd. It exists to check tinyseek's FP32 forward and
hand-written backward (tests/reference/compare.py), so clarity beats speed; the reference
runs in float64 so that its own rounding is negligible next to FP32.

Dimension names follow DESIGN.md §3: B T D H dn dr dv dq dc F Fe E Es K V Dmtp.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

# Defects that the self-test injects on purpose to prove that compare.py notices them.
# Each one is a plausible implementation mistake; none is active in a normal run.
KNOWN_BUGS = {
    "balance_no_grad": "sequence-wise balance loss contributes no gradient (P_i detached)",
    "gate_denominator_detached": "no gradient through the top-K normalisation sum of the gates",
    "rope_half_split": "RoPE rotates (i, i+dr/2) pairs instead of consecutive (2i, 2i+1) pairs",
    "mtp_h_after_norm": "MTP takes h^0 after the final norm instead of before",
    "mtp_concat_h_first": "MTP concatenates [hnorm(h) ; enorm(emb)] instead of embedding first",
}


@dataclass
class RefConfig:
    V: int
    D: int
    L: int
    H: int
    dn: int
    dr: int
    dv: int
    dq: int  # 0 = direct q_proj
    dc: int
    F: int
    Fe: int
    E: int  # 0 = no MoE anywhere
    Es: int
    K: int
    n_group: int  # 1 = no group-limited routing
    topk_group: int
    routed_scaling_factor: float
    norm_topk_prob: bool
    first_k_dense_replace: int
    Dmtp: int
    eps: float
    rope_theta: float
    init_std: float
    mtp_lambda: float
    balance_alpha: float

    def is_moe_layer(self, layer):
        """Main layers are MoE from first_k_dense_replace on; MTP layers (index >= L) are MoE
        when the main stack has an MoE layer at all (docs/model.md: routed experts and
        num_hidden_layers >= first_k_dense_replace), like the released MTP layer."""
        if self.E == 0:
            return False
        if layer >= self.L:
            return self.L >= self.first_k_dense_replace
        return layer >= self.first_k_dense_replace


def _require(hf, key):
    if key not in hf:
        raise ValueError(f"config.json: missing key {key!r}")
    return hf[key]


def _int_or_zero(value):
    return 0 if value is None else int(value)


def config_from_dict(hf):
    """HF DeepseekV3Config keys + a `training` section -> RefConfig (with validation)."""
    train = hf.get("training", {}) or {}
    if hf.get("scoring_func", "sigmoid") != "sigmoid":
        raise ValueError("config.json: scoring_func must be 'sigmoid' (DeepSeek-V3)")
    if int(hf.get("moe_layer_freq", 1) or 1) != 1:
        raise ValueError("config.json: moe_layer_freq must be 1")
    if hf.get("tie_word_embeddings", False):
        raise ValueError("config.json: tie_word_embeddings must be false (untied head)")
    E = _int_or_zero(hf.get("n_routed_experts"))
    n_group = max(1, _int_or_zero(hf.get("n_group")))
    topk_group = hf.get("topk_group")
    cfg = RefConfig(
        V=int(_require(hf, "vocab_size")),
        D=int(_require(hf, "hidden_size")),
        L=int(_require(hf, "num_hidden_layers")),
        H=int(_require(hf, "num_attention_heads")),
        dn=int(_require(hf, "qk_nope_head_dim")),
        dr=int(_require(hf, "qk_rope_head_dim")),
        dv=int(_require(hf, "v_head_dim")),
        dq=_int_or_zero(_require(hf, "q_lora_rank")),
        dc=int(_require(hf, "kv_lora_rank")),
        F=int(_require(hf, "intermediate_size")),
        Fe=_int_or_zero(hf.get("moe_intermediate_size")),
        E=E,
        Es=_int_or_zero(hf.get("n_shared_experts")),
        K=_int_or_zero(hf.get("num_experts_per_tok")),
        n_group=n_group,
        topk_group=n_group if topk_group is None else int(topk_group),
        routed_scaling_factor=float(hf.get("routed_scaling_factor", 2.5)),  # HF default
        norm_topk_prob=bool(hf.get("norm_topk_prob", True)),
        first_k_dense_replace=_int_or_zero(hf.get("first_k_dense_replace")),
        Dmtp=_int_or_zero(hf.get("num_nextn_predict_layers")),
        eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=float(hf.get("rope_theta", 10000.0)),
        init_std=float(train.get("init_std", 0.006)),
        mtp_lambda=float(train.get("mtp_lambda", 0.3)),
        balance_alpha=float(train.get("balance_alpha", 1e-4)),
    )
    if cfg.dr % 2:
        raise ValueError("config.json: qk_rope_head_dim must be even (RoPE rotates pairs)")
    if cfg.E:
        if not (1 <= cfg.K <= cfg.E):
            raise ValueError("config.json: num_experts_per_tok must be in 1..n_routed_experts")
        if cfg.E % cfg.n_group or (cfg.n_group > 1 and cfg.E // cfg.n_group < 2):
            raise ValueError("config.json: n_group must divide n_routed_experts with >= 2 experts per group")
        if not (1 <= cfg.topk_group <= cfg.n_group):
            raise ValueError("config.json: topk_group must be in 1..n_group")
        if cfg.topk_group * (cfg.E // cfg.n_group) < cfg.K:
            raise ValueError("config.json: topk_group groups hold fewer experts than num_experts_per_tok")
        if cfg.Fe <= 0:
            raise ValueError("config.json: moe_intermediate_size must be positive with routed experts")
    return cfg


# ---------------------------------------------------------------------------------------
# Parameter list (HF names, docs/model.md "Parameters")
# ---------------------------------------------------------------------------------------

def parameter_specs(cfg):
    """[(name, shape, kind)] for every parameter; kind in linear|embedding|norm|router_bias."""
    c = cfg
    specs = [("model.embed_tokens.weight", (c.V, c.D), "embedding")]

    def decoder_layer(layer):
        p = f"model.layers.{layer}."
        out = [(p + "input_layernorm.weight", (c.D,), "norm"),
               (p + "post_attention_layernorm.weight", (c.D,), "norm")]
        a = p + "self_attn."
        if c.dq:
            out += [(a + "q_a_proj.weight", (c.dq, c.D), "linear"),
                    (a + "q_a_layernorm.weight", (c.dq,), "norm"),
                    (a + "q_b_proj.weight", (c.H * (c.dn + c.dr), c.dq), "linear")]
        else:
            out += [(a + "q_proj.weight", (c.H * (c.dn + c.dr), c.D), "linear")]
        out += [(a + "kv_a_proj_with_mqa.weight", (c.dc + c.dr, c.D), "linear"),
                (a + "kv_a_layernorm.weight", (c.dc,), "norm"),
                (a + "kv_b_proj.weight", (c.H * (c.dn + c.dv), c.dc), "linear"),
                (a + "o_proj.weight", (c.D, c.H * c.dv), "linear")]
        m = p + "mlp."
        if c.is_moe_layer(layer):
            out += [(m + "gate.weight", (c.E, c.D), "linear"),
                    (m + "gate.e_score_correction_bias", (c.E,), "router_bias")]
            for e in range(c.E):
                out += [(m + f"experts.{e}.gate_proj.weight", (c.Fe, c.D), "linear"),
                        (m + f"experts.{e}.up_proj.weight", (c.Fe, c.D), "linear"),
                        (m + f"experts.{e}.down_proj.weight", (c.D, c.Fe), "linear")]
            if c.Es:
                w = c.Fe * c.Es
                out += [(m + "shared_experts.gate_proj.weight", (w, c.D), "linear"),
                        (m + "shared_experts.up_proj.weight", (w, c.D), "linear"),
                        (m + "shared_experts.down_proj.weight", (c.D, w), "linear")]
        else:
            out += [(m + "gate_proj.weight", (c.F, c.D), "linear"),
                    (m + "up_proj.weight", (c.F, c.D), "linear"),
                    (m + "down_proj.weight", (c.D, c.F), "linear")]
        return out

    for layer in range(c.L):
        specs += decoder_layer(layer)
    for k in range(1, c.Dmtp + 1):
        layer = c.L + k - 1
        p = f"model.layers.{layer}."
        specs += [(p + "enorm.weight", (c.D,), "norm"),
                  (p + "hnorm.weight", (c.D,), "norm"),
                  (p + "eh_proj.weight", (c.D, 2 * c.D), "linear"),
                  (p + "shared_head.norm.weight", (c.D,), "norm")]
        specs += decoder_layer(layer)
    specs += [("model.norm.weight", (c.D,), "norm"),
              ("lm_head.weight", (c.V, c.D), "linear")]
    return specs


# ---------------------------------------------------------------------------------------
# Ops, each the formula of docs/model.md
# ---------------------------------------------------------------------------------------

def linear(x, w):
    """y = x Wᵀ, W [out, in]."""
    return x @ w.t()


def rmsnorm(x, w, eps):
    """y = x / sqrt(mean(x²) + eps) · w over the last axis."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def silu(x):
    return x * torch.sigmoid(x)


def rope(x, theta, half_split=False):
    """x [B, T, ..., dr]: rotate consecutive pairs (2i, 2i+1) by pos·θ_i,
    θ_i = theta^(−2i/dr), pos = index along axis 1."""
    T, dr = x.shape[1], x.shape[-1]
    i = torch.arange(dr // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / dr)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [T, dr/2]
    shape = [1, T] + [1] * (x.dim() - 3) + [dr // 2]
    cos = torch.cos(angle).to(x.dtype).view(shape)
    sin = torch.sin(angle).to(x.dtype).view(shape)
    if half_split:  # injected defect: the non-interleaved layout
        x0, x1 = x[..., : dr // 2], x[..., dr // 2:]
        return torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack([y0, y1], -1).flatten(-2)


def descending_order(x):
    """Indices sorting x descending along the last axis, ties: lower index first."""
    return torch.sort(-x, dim=-1, stable=True).indices


def route(choice, K, n_group, topk_group):
    """choice [N, E] = s + b (no grad) -> (selected [N, K] expert ids, diagnostics).

    Group-limited routing: group score = sum of the top-2 choices in each of n_group groups
    of E/n_group consecutive experts; the topk_group best groups are kept, the other experts
    are masked with −inf; then the K largest choices are selected (ties: lower index)."""
    N, E = choice.shape
    masked = choice
    group_margin = math.inf
    if n_group > 1:
        grouped = choice.view(N, n_group, E // n_group)
        top2 = torch.sort(grouped, dim=-1, descending=True).values[..., :2].sum(-1)  # [N, n_group]
        order = descending_order(top2)
        keep = torch.zeros(N, n_group, dtype=torch.bool)
        keep.scatter_(1, order[:, :topk_group], True)
        masked = choice.masked_fill(~keep.repeat_interleave(E // n_group, dim=1), -math.inf)
        if topk_group < n_group:
            ranked = top2.gather(1, order)
            group_margin = (ranked[:, topk_group - 1] - ranked[:, topk_group]).min().item()
    order = descending_order(masked)
    selected = order[:, :K]
    expert_margin = math.inf
    if K < E:
        ranked = masked.gather(1, order)
        gap = ranked[:, K - 1] - ranked[:, K]  # inf where the (K+1)-th is masked
        expert_margin = gap.min().item()
    return selected, {"group_margin": group_margin, "expert_margin": expert_margin}


class DeepSeekV3Ref(torch.nn.Module):
    """The whole model. `params` maps HF names to nn.Parameters (dtype of the computation);
    the router bias is a Parameter too, so that a gradient reaching it would show up."""

    def __init__(self, cfg, weights, dtype=torch.float64, bugs=()):
        super().__init__()
        self.cfg = cfg
        self.dtype = dtype
        unknown = set(bugs) - set(KNOWN_BUGS)
        if unknown:
            raise ValueError(f"unknown injected bugs {sorted(unknown)}")
        self.bugs = set(bugs)
        self.params = {}
        for name, shape, _ in parameter_specs(cfg):
            if name not in weights:
                raise ValueError(f"weights: missing parameter {name}")
            value = torch.as_tensor(np.asarray(weights[name]), dtype=dtype)
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"weights: {name} has shape {list(value.shape)}, expected {list(shape)}")
            self.params[name] = torch.nn.Parameter(value.clone())
        extra = set(weights) - set(self.params)
        if extra:
            raise ValueError(f"weights: unexpected tensors {sorted(extra)[:5]}")

    def w(self, name):
        return self.params[name]

    # ---- blocks ---------------------------------------------------------------------------

    def mla(self, x, prefix):
        """x [B, T, D] -> [B, T, D], causal multi-head latent attention."""
        c = self.cfg
        B, T, _ = x.shape
        if c.dq:
            c_q = rmsnorm(linear(x, self.w(prefix + "q_a_proj.weight")),
                          self.w(prefix + "q_a_layernorm.weight"), c.eps)
            q = linear(c_q, self.w(prefix + "q_b_proj.weight"))
        else:
            q = linear(x, self.w(prefix + "q_proj.weight"))
        q = q.view(B, T, c.H, c.dn + c.dr)
        q_nope, q_pe = q[..., : c.dn], q[..., c.dn:]
        kv_a = linear(x, self.w(prefix + "kv_a_proj_with_mqa.weight"))  # [B, T, dc+dr]
        c_kv = rmsnorm(kv_a[..., : c.dc], self.w(prefix + "kv_a_layernorm.weight"), c.eps)
        k_pe = kv_a[..., c.dc:]  # [B, T, dr], one head shared by all heads
        kv = linear(c_kv, self.w(prefix + "kv_b_proj.weight")).view(B, T, c.H, c.dn + c.dv)
        k_nope, v = kv[..., : c.dn], kv[..., c.dn:]
        half = "rope_half_split" in self.bugs
        q_pe = rope(q_pe, c.rope_theta, half)
        k_pe = rope(k_pe, c.rope_theta, half)
        scores = (torch.einsum("bthd,bshd->bhts", q_nope, k_nope)
                  + torch.einsum("bthd,bsd->bhts", q_pe, k_pe)) / math.sqrt(c.dn + c.dr)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        p = torch.softmax(scores.masked_fill(future, -math.inf), dim=-1)
        o = torch.einsum("bhts,bshd->bthd", p, v).reshape(B, T, c.H * c.dv)
        return linear(o, self.w(prefix + "o_proj.weight"))

    def swiglu(self, x, prefix):
        return linear(silu(linear(x, self.w(prefix + "gate_proj.weight")))
                      * linear(x, self.w(prefix + "up_proj.weight")),
                      self.w(prefix + "down_proj.weight"))

    def moe(self, u, prefix):
        """u [B, T, D] -> (y [B, T, D], balance loss of this layer (mean over sequences),
        load counts [E], routing diagnostics)."""
        c = self.cfg
        B, T, D = u.shape
        x = u.reshape(B * T, D)
        s = torch.sigmoid(linear(x, self.w(prefix + "gate.weight")))  # [N, E]
        choice = s.detach() + self.w(prefix + "gate.e_score_correction_bias").detach()
        selected, diag = route(choice, c.K, c.n_group, c.topk_group)  # [N, K]
        gates = s.gather(1, selected)
        if c.norm_topk_prob:
            denominator = gates.sum(-1, keepdim=True) + 1e-20
            if "gate_denominator_detached" in self.bugs:
                denominator = denominator.detach()
            gates = gates / denominator
        gates = gates * c.routed_scaling_factor
        y = torch.zeros_like(x)
        for e in range(c.E):
            tokens, slot = (selected == e).nonzero(as_tuple=True)
            if tokens.numel() == 0:
                continue
            out = self.swiglu(x[tokens], prefix + f"experts.{e}.")
            y = y.index_add(0, tokens, out * gates[tokens, slot].unsqueeze(-1))
        if c.Es:
            y = y + self.swiglu(x, prefix + "shared_experts.")
        chosen = torch.zeros(B * T, c.E, dtype=self.dtype).scatter_(1, selected, 1.0)  # no grad
        f = c.E / (c.K * T) * chosen.view(B, T, c.E).sum(1)  # [B, E]
        share = s / s.sum(-1, keepdim=True)
        if "balance_no_grad" in self.bugs:
            share = share.detach()
        P = share.view(B, T, c.E).mean(1)  # [B, E]
        balance = (f * P).sum(-1).mean()
        counts = chosen.sum(0).round().to(torch.int64)
        return y.view(B, T, D), balance, counts, diag

    def block(self, x, layer, record):
        """Pre-norm decoder layer: h = x + MLA(norm(x)); out = h + FFN(norm(h))."""
        c = self.cfg
        p = f"model.layers.{layer}."
        h = x + self.mla(rmsnorm(x, self.w(p + "input_layernorm.weight"), c.eps), p + "self_attn.")
        u = rmsnorm(h, self.w(p + "post_attention_layernorm.weight"), c.eps)
        if c.is_moe_layer(layer):
            ffn, balance, counts, diag = self.moe(u, p + "mlp.")
            record["balance"].append(balance)
            record["load_counts"][layer] = counts
            record["routing"][layer] = diag
        else:
            ffn = self.swiglu(u, p + "mlp.")
        return h + ffn

    # ---- whole model ----------------------------------------------------------------------

    def forward(self, tokens):
        """tokens [B, T+1] int -> dict of logits, losses, load counts (see docs/model.md)."""
        c = self.cfg
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)
        B, T = tokens.shape[0], tokens.shape[1] - 1
        if T <= c.Dmtp:
            raise ValueError(f"sequence length T={T} must exceed num_nextn_predict_layers={c.Dmtp}")
        if tokens.min() < 0 or tokens.max() >= c.V:
            raise ValueError(f"tokens must lie in [0, {c.V})")
        record = {"balance": [], "load_counts": {}, "routing": {}}
        embed = self.w("model.embed_tokens.weight")
        head = self.w("lm_head.weight")

        def cross_entropy(logits, targets):
            logp = torch.log_softmax(logits, dim=-1)
            return -logp.gather(-1, targets.unsqueeze(-1)).mean()

        h = embed[tokens[:, :T]]
        for layer in range(c.L):
            h = self.block(h, layer, record)
        h_final = rmsnorm(h, self.w("model.norm.weight"), c.eps)
        logits = linear(h_final, head)  # [B, T, V]
        loss_main = cross_entropy(logits, tokens[:, 1:])

        out = {"logits": logits, "loss_main": loss_main, "logits_mtp": [], "loss_mtp": []}
        h_prev = h_final if "mtp_h_after_norm" in self.bugs else h  # h^0: before the final norm
        for k in range(1, c.Dmtp + 1):
            p = f"model.layers.{c.L + k - 1}."
            n = T - k  # valid positions i = 0..T-k-1
            e = rmsnorm(embed[tokens[:, k:k + n]], self.w(p + "enorm.weight"), c.eps)
            hh = rmsnorm(h_prev[:, :n], self.w(p + "hnorm.weight"), c.eps)
            pair = [hh, e] if "mtp_concat_h_first" in self.bugs else [e, hh]
            h_k = self.block(linear(torch.cat(pair, -1), self.w(p + "eh_proj.weight")), c.L + k - 1, record)
            logits_k = linear(rmsnorm(h_k, self.w(p + "shared_head.norm.weight"), c.eps), head)
            out["logits_mtp"].append(logits_k)  # [B, T-k, V]
            out["loss_mtp"].append(cross_entropy(logits_k, tokens[:, k + 1:k + 1 + n]))
            h_prev = h_k

        zero = torch.zeros((), dtype=self.dtype)
        loss_balance = torch.stack(record["balance"]).sum() if record["balance"] else zero
        loss = loss_main + c.balance_alpha * loss_balance
        if c.Dmtp:
            loss = loss + c.mtp_lambda / c.Dmtp * torch.stack(out["loss_mtp"]).sum()
        out.update(loss=loss, loss_balance=loss_balance, load_counts=record["load_counts"],
                   routing=record["routing"])
        return out


def run(cfg, weights, tokens, dtype=torch.float64, bugs=()):
    """Forward + backward. Returns ({output name: np.ndarray} in the dump's naming, routing
    diagnostics). Gradients that autograd never reaches (router bias, unselected experts)
    are exact zeros."""
    model = DeepSeekV3Ref(cfg, weights, dtype, bugs)
    out = model(tokens)
    out["loss"].backward()

    def np_(t):
        return t.detach().cpu().numpy()

    result = {"logits": np_(out["logits"])}
    for k, logits in enumerate(out["logits_mtp"], start=1):
        result[f"logits_mtp.{k}"] = np_(logits)
    result["loss"] = np_(out["loss"]).reshape(1)
    result["loss_main"] = np_(out["loss_main"]).reshape(1)
    for k, loss in enumerate(out["loss_mtp"], start=1):
        result[f"loss_mtp.{k}"] = np_(loss).reshape(1)
    result["loss_balance"] = np_(out["loss_balance"]).reshape(1)
    for layer, counts in out["load_counts"].items():
        result[f"load_counts.{layer}"] = np_(counts).astype(np.int32)
    for name, param in model.params.items():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        result[f"grad.{name}"] = np_(grad)
    return result, out["routing"]
