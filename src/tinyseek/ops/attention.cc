#include "tinyseek/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/ops/kernels.h"

namespace tinyseek::ops {

namespace {

// Queries per forward task. Causal rows differ in cost (row t touches t+1 keys); blocks of
// rows spread over (b, h, block) tasks keep both cores busy even for B·H = 1.
constexpr int64_t kQueryBlock = 32;

void check_dims(int64_t B, int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv) {
  TS_CHECK(B >= 0 && T_seq > 0 && H > 0 && dn >= 0 && dr >= 0 && dn + dr > 0 && dv > 0,
           "attention dims must be positive: B " << B << ", T " << T_seq << ", H " << H << ", dn "
                                                 << dn << ", dr " << dr << ", dv " << dv,
           "check the model config (num_attention_heads, qk_*_head_dim, v_head_dim)");
}

// Strides of the layouts in attention.h.
struct Layout {
  int64_t H, dn, dr, dv;
  int64_t q_row() const { return H * (dn + dr); }   // q  [N, H, dn+dr]
  int64_t kv_row() const { return H * (dn + dv); }  // kv [N, H, dn+dv]
  int64_t o_row() const { return H * dv; }          // o  [N, H·dv]
};

// score(t, s) / scale for one head: q_nope·k_nope + q_pe·k_pe.
template <class T>
inline T raw_score(const T* q, const T* k_nope, const T* k_pe, int64_t dn, int64_t dr) {
  return detail::dot(q, k_nope, dn) + detail::dot(q + dn, k_pe, dr);
}

// dk_pe [N, dr] += Σ_h part [B, H, T, dr], heads in order 0..H−1, so the shared key's gradient
// does not depend on which thread ran which head.
template <class T>
void sum_dk_pe_parts(T* dk_pe, const T* dk_pe_part, int64_t B, int64_t T_seq, int64_t H, int64_t dr) {
  parallel_ranges(B * T_seq, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t b = n / T_seq, s = n % T_seq;
      T* dst = dk_pe + n * dr;
      for (int64_t h = 0; h < H; ++h) {
        const T* src = dk_pe_part + ((b * H + h) * T_seq + s) * dr;
        for (int64_t j = 0; j < dr; ++j) dst[j] += src[j];
      }
    }
  });
}

}  // namespace

template <class T>
void attention_forward_reference(T* o, T* lse, const T* q, const T* kv, const T* k_pe, int64_t B,
                                 int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv) {
  check_dims(B, T_seq, H, dn, dr, dv);
  const Layout L{H, dn, dr, dv};
  const T scale = T(1) / std::sqrt(static_cast<T>(dn + dr));
  const int64_t blocks = (T_seq + kQueryBlock - 1) / kQueryBlock;
  // Per thread: the score row p[T] and the output accumulator acc[dv].
  detail::ThreadSlices<T> slices(0, static_cast<size_t>(T_seq + dv));
  parallel_for(B * H * blocks, [&](int64_t task) {
    const int64_t blk = task % blocks, h = (task / blocks) % H, b = task / (blocks * H);
    T* p = slices.slice();
    T* acc = p + T_seq;
    const int64_t base = b * T_seq;  // first token of the sequence
    const int64_t t1 = std::min(T_seq, (blk + 1) * kQueryBlock);
    for (int64_t t = blk * kQueryBlock; t < t1; ++t) {
      const T* qt = q + (base + t) * L.q_row() + h * (dn + dr);
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t s = 0; s <= t; ++s) {
        const T* ks = kv + (base + s) * L.kv_row() + h * (dn + dv);
        p[s] = raw_score(qt, ks, k_pe + (base + s) * dr, dn, dr) * scale;
        m = std::max(m, p[s]);
      }
      for (int64_t s = 0; s <= t; ++s) p[s] = std::exp(p[s] - m);
      const T l = detail::sum(p, t + 1);
      for (int64_t j = 0; j < dv; ++j) acc[j] = T(0);
      for (int64_t s = 0; s <= t; ++s)
        detail::axpy(acc, p[s], kv + (base + s) * L.kv_row() + h * (dn + dv) + dn, dv);
      T* ot = o + (base + t) * L.o_row() + h * dv;
      const T inv_l = T(1) / l;
      for (int64_t j = 0; j < dv; ++j) ot[j] = acc[j] * inv_l;
      lse[(base + t) * H + h] = m + std::log(l);
    }
  });
}

template <class T>
void attention_backward_reference(T* dq, T* dkv, T* dk_pe, const T* do_, const T* q, const T* kv,
                                  const T* k_pe, const T* o, const T* lse, int64_t B, int64_t T_seq,
                                  int64_t H, int64_t dn, int64_t dr, int64_t dv) {
  check_dims(B, T_seq, H, dn, dr, dv);
  const Layout L{H, dn, dr, dv};
  const T scale = T(1) / std::sqrt(static_cast<T>(dn + dr));
  // dk_pe partials per (b, h): [B, H, T, dr], summed over h in order afterwards so the shared
  // key's gradient does not depend on which thread ran which head.
  T* dk_pe_part = detail::scratch<T>(0, static_cast<size_t>(std::max<int64_t>(B * H * T_seq * dr, 1)));
  detail::ThreadSlices<T> slices(1, static_cast<size_t>(T_seq));  // dS row
  parallel_for(B * H, [&](int64_t task) {
    const int64_t h = task % H, b = task / H;
    const int64_t base = b * T_seq;
    T* ds = slices.slice();
    T* kpe_part = dk_pe_part + task * T_seq * dr;
    for (int64_t i = 0; i < T_seq * dr; ++i) kpe_part[i] = T(0);
    for (int64_t t = 0; t < T_seq; ++t) {
      const int64_t nt = base + t;
      const T* qt = q + nt * L.q_row() + h * (dn + dr);
      const T* dot_ = do_ + nt * L.o_row() + h * dv;
      const T delta = detail::dot(dot_, o + nt * L.o_row() + h * dv, dv);
      const T lse_t = lse[nt * H + h];
      // dS(t, s) = p (dP − Δ) · scale, with p recomputed from the saved logsumexp.
      for (int64_t s = 0; s <= t; ++s) {
        const int64_t ns = base + s;
        const T* ks = kv + ns * L.kv_row() + h * (dn + dv);
        const T p = std::exp(raw_score(qt, ks, k_pe + ns * dr, dn, dr) * scale - lse_t);
        const T dp = detail::dot(dot_, ks + dn, dv);
        ds[s] = p * (dp - delta) * scale;
        // dv_s += p do_t
        detail::axpy(dkv + ns * L.kv_row() + h * (dn + dv) + dn, p, dot_, dv);
      }
      T* dqt = dq + nt * L.q_row() + h * (dn + dr);
      for (int64_t s = 0; s <= t; ++s) {
        const int64_t ns = base + s;
        const T* ks = kv + ns * L.kv_row() + h * (dn + dv);
        detail::axpy(dqt, ds[s], ks, dn);                      // dq_nope += dS k_nope
        detail::axpy(dqt + dn, ds[s], k_pe + ns * dr, dr);     // dq_pe   += dS k_pe
        detail::axpy(dkv + ns * L.kv_row() + h * (dn + dv), ds[s], qt, dn);  // dk_nope += dS q_nope
        detail::axpy(kpe_part + s * dr, ds[s], qt + dn, dr);   // dk_pe(h) += dS q_pe
      }
    }
  });
  sum_dk_pe_parts(dk_pe, dk_pe_part, B, T_seq, H, dr);
}

template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* kv, const T* k_pe, int64_t B,
                       int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv) {
  if constexpr (std::is_same_v<T, float>) {
    if (simd_path() == SimdPath::Avx512Bf16) {
      check_dims(B, T_seq, H, dn, dr, dv);
      detail::attention_forward_avx512(o, lse, q, kv, k_pe, B, T_seq, H, dn, dr, dv);
      return;
    }
  }
  attention_forward_reference(o, lse, q, kv, k_pe, B, T_seq, H, dn, dr, dv);
}

template <class T>
void attention_backward(T* dq, T* dkv, T* dk_pe, const T* do_, const T* q, const T* kv,
                        const T* k_pe, const T* o, const T* lse, int64_t B, int64_t T_seq,
                        int64_t H, int64_t dn, int64_t dr, int64_t dv) {
  if constexpr (std::is_same_v<T, float>) {
    if (simd_path() == SimdPath::Avx512Bf16) {
      check_dims(B, T_seq, H, dn, dr, dv);
      float* part = detail::scratch<float>(0, static_cast<size_t>(std::max<int64_t>(B * H * T_seq * dr, 1)));
      detail::attention_backward_avx512(dq, dkv, part, do_, q, kv, k_pe, o, lse, B, T_seq, H, dn, dr, dv);
      sum_dk_pe_parts(dk_pe, part, B, T_seq, H, dr);
      return;
    }
  }
  attention_backward_reference(dq, dkv, dk_pe, do_, q, kv, k_pe, o, lse, B, T_seq, H, dn, dr, dv);
}

template void attention_forward_reference<float>(float*, float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_forward_reference<double>(double*, double*, const double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_backward_reference<float>(float*, float*, float*, const float*, const float*, const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_backward_reference<double>(double*, double*, double*, const double*, const double*, const double*, const double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_forward<float>(float*, float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_forward<double>(double*, double*, const double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<float>(float*, float*, float*, const float*, const float*, const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<double>(double*, double*, double*, const double*, const double*, const double*, const double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

}  // namespace tinyseek::ops
