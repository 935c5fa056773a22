"""Summary table of bench/gemm.sh: medians over the interleaved rounds of
`tinyseek bench gemm --json` (OUT/tinyseek.<r>.json) and bench/peers/gemm_peers
(OUT/peers.<r>.json), and the ratios issue #3 targets.

Usage: python3 bench/gemm_summary.py OUT ROUNDS PEERS(1|0)
"""
import json, statistics, sys
out, rounds, peers = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
ts = [json.load(open(f"{out}/tinyseek.{r}.json")) for r in range(1, rounds + 1)]
ps = [json.load(open(f"{out}/peers.{r}.json")) for r in range(1, rounds + 1)] if peers else []

def by_key(runs, field):
    """{(format, m, n, k): [value per round]}"""
    d = {}
    for run in runs:
        for row in run["rows"]:
            if row.get(field) is not None:
                d.setdefault((row["format"], row["m"], row["n"], row["k"]), []).append(row[field])
    return d

gf = by_key(ts + ps, "gflops")
gq = by_key(ts + ps, "gflops_with_quantize")
gp = by_key(ts + ps, "gflops_prepacked")
pct = by_key(ts, "pct_peak")
med = lambda v: statistics.median(v) if v else None
peak = lambda key: med([t["peak"][key] for t in ts if t["peak"][key] is not None])
p32, pbf = peak("fp32_fma_gflops"), peak("bf16_dot_gflops")
print(f"tinyseek: threads {ts[0]['threads']}, simd {ts[0]['simd']}; measured peak FP32 FMA "
      f"{p32 or 'n/a'}, BF16 dot {pbf or 'n/a'} GFLOP/s (median of {rounds} rounds)")
if peers:
    p = ps[0]
    print(f"peers: oneDNN {p['onednn_version']}, OpenBLAS core {p['openblas_core']} "
          f"(OPENBLAS_CORETYPE={p['openblas_coretype_env']}), {p['openblas_threads']} OpenBLAS threads")
shapes = []
for t in ts[0]["rows"]:
    s = (t["m"], t["n"], t["k"])
    if s not in shapes:
        shapes.append(s)

def cell(fmt, s, table=gf):
    v = med(table.get((fmt,) + s, []))
    return "-" if v is None else f"{v:.1f}"

# Ratio of the medians, and in brackets the range of the per-round ratios (the noise).
PAIRS = [("fp8-tile128", "onednn-bf16", 0.90), ("bf16", "onednn-bf16", 0.95), ("fp32", "openblas-f32", 0.95)]
def ratio(a, b, s, table=gf):
    va, vb = table.get((a,) + s, []), table.get((b,) + s, [])
    if not va or not vb:
        return None, "-"
    rounds_ratio = [x / y for x, y in zip(va, vb)]
    r = med(va) / med(vb)
    return r, f"{r:.2f} [{min(rounds_ratio):.2f}-{max(rounds_ratio):.2f}]"

print(f"\nkernel-only GFLOP/s, median of {rounds} interleaved rounds; ratio [min-max over rounds]")
hdr = ["MxNxK", "fp8-tile128", "bf16", "fp32", "onednn-bf16", "onednn-f32", "openblas-f32"]
hdr += [f"{a}/{b} (>={t})" for a, b, t in PAIRS] if peers else []
rows = []
geo = {p: [] for p in PAIRS}
for s in shapes:
    row = ["x".join(map(str, s))] + [cell(f, s) for f in hdr[1:7]]
    if peers:
        for p in PAIRS:
            r, text = ratio(p[0], p[1], s)
            row.append(text)
            if r:
                geo[p].append(r)
    rows.append(row)
if peers:
    summary = ["geomean"] + [""] * 6
    for p in PAIRS:
        g = statistics.geometric_mean(geo[p]) if geo[p] else None
        summary.append("-" if g is None else f"{g:.2f} {'meets' if g >= p[2] else 'below'} {p[2]}")
    rows.append(summary)
widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
line = lambda r: "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths)) + " |"
print(line(hdr))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))

print(f"\nend to end from FP32 A and W (conversion / quantization timed), and the other FP8 formats")
hdr2 = ["MxNxK", "fp8-tile128 +q", "bf16 +q", "onednn-bf16 +reorder", "fp8-tile128+q / onednn-bf16+r",
        "fp8-tensor", "fp8-row", "fp8-mx32", "fp8-tile128 %peak", "bf16 %peak", "fp32 %peak"]
rows2 = []
for s in shapes:
    _, r = ratio("fp8-tile128", "onednn-bf16", s, gq)
    rows2.append(["x".join(map(str, s)), cell("fp8-tile128", s, gq), cell("bf16", s, gq),
                  cell("onednn-bf16", s, gq), r if peers else "-", cell("fp8-tensor", s), cell("fp8-row", s),
                  cell("fp8-mx32", s), cell("fp8-tile128", s, pct), cell("bf16", s, pct), cell("fp32", s, pct)])
widths = [max(len(str(r[i])) for r in rows2 + [hdr2]) for i in range(len(hdr2))]
print(line(hdr2))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows2:
    print(line(r))

if gp:
    print(f"\nweights pre-packed once outside the timing (tinyseek gemm::pack_b; oneDNN weights in its own layout)")
    hdr3 = ["MxNxK", "fp8-tile128", "bf16", "fp32", "onednn-bf16", "onednn-f32",
            "fp8-tile128/onednn-bf16", "bf16/onednn-bf16", "fp32/onednn-f32"]
    rows3 = []
    for s in shapes:
        rows3.append(["x".join(map(str, s))] + [cell(f, s, gp) for f in hdr3[1:6]] +
                     [ratio(a, b, s, gp)[1] for a, b in [("fp8-tile128", "onednn-bf16"), ("bf16", "onednn-bf16"),
                                                          ("fp32", "onednn-f32")]])
    widths = [max(len(str(r[i])) for r in rows3 + [hdr3]) for i in range(len(hdr3))]
    print(line(hdr3))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows3:
        print(line(r))
