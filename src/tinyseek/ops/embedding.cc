#include "tinyseek/ops/embedding.h"

#include <algorithm>
#include <cstring>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"

namespace tinyseek::ops {

template <class T>
void embedding_forward(T* out, const Index* tokens, const T* table, int64_t N, int64_t D,
                       int64_t V) {
  for (int64_t n = 0; n < N; ++n)
    TS_CHECK(tokens[n] >= 0 && tokens[n] < V,
             "token id " << tokens[n] << " at position " << n << " is outside the vocabulary [0, "
                         << V << ")",
             "the token data does not match this model's vocab_size; re-tokenize or fix the config");
  parallel_ranges(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      std::memcpy(out + n * D, table + static_cast<int64_t>(tokens[n]) * D, sizeof(T) * D);
  });
}

// Threads split the columns: every element of dtable is owned by one thread and receives its
// contributions in ascending n, whatever the thread count. Blocks of 64 columns keep each
// thread's writes on its own cache lines.
template <class T>
void embedding_backward(T* dtable, const T* dout, const Index* tokens, int64_t N, int64_t D,
                        int64_t V) {
  constexpr int64_t kColumnBlock = 64;
  parallel_ranges(D, kColumnBlock, [&](int64_t d0, int64_t d1) {
    for (int64_t n = 0; n < N; ++n) {
      T* row = dtable + static_cast<int64_t>(tokens[n]) * D;
      const T* g = dout + n * D;
      for (int64_t d = d0; d < d1; ++d) row[d] += g[d];
    }
  });
}

template void embedding_forward<float>(float*, const Index*, const float*, int64_t, int64_t, int64_t);
template void embedding_forward<double>(double*, const Index*, const double*, int64_t, int64_t, int64_t);
template void embedding_backward<float>(float*, const float*, const Index*, int64_t, int64_t, int64_t);
template void embedding_backward<double>(double*, const double*, const Index*, int64_t, int64_t, int64_t);

}  // namespace tinyseek::ops
