#include "tinyseek/dist/comm.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "tinyseek/base/check.h"
#include "tinyseek/base/timer.h"

namespace tinyseek::dist {
namespace {

bool g_initialised = false;

// MPI counts and displacements are int: refuse (with the way out) instead of overflowing.
int as_count(size_t n, const char* what) {
  TS_CHECK(n <= static_cast<size_t>(std::numeric_limits<int>::max()), what << " of " << n
           << " elements exceeds MPI's int count limit", "use more ranks or a smaller model");
  return static_cast<int>(n);
}

}  // namespace

Comm& world() {
  static Comm c;
  return c;
}

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

void init(int* argc, char*** argv) {
  if (g_initialised || !launched_by_mpi()) return;
  int provided = 0;
  // Only the main thread calls MPI (OpenMP regions never do).
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  g_initialised = true;
  Comm& c = world();
  MPI_Comm_rank(MPI_COMM_WORLD, &c.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &c.size_);
}

void finalize() {
  if (!g_initialised) return;
  MPI_Finalize();
  g_initialised = false;
}

void abort_job(const std::string& message, int status) {
  const Comm& c = world();
  if (c.distributed()) {
    std::fprintf(stderr, "rank %d/%d: %s\n", c.rank(), c.size(), message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
  }
  std::fprintf(stderr, "%s\n", message.c_str());
}

template <class F>
void Comm::measured(CommKind kind, size_t bytes, F&& call) const {
  CommStats& s = stats_[static_cast<size_t>(kind)];
  const Timer t;
  if (split_wait_) {
    MPI_Barrier(MPI_COMM_WORLD);
    s.wait_seconds += t.seconds();
  }
  call();
  s.seconds += t.seconds();
  s.bytes_sent += bytes;
  ++s.calls;
}

void Comm::barrier() const {
  if (distributed()) measured(CommKind::kOther, 0, [&] { MPI_Barrier(MPI_COMM_WORLD); });
}

void Comm::allreduce_sum(std::span<int64_t> x) const {
  if (!distributed() || x.empty()) return;
  const int n = as_count(x.size(), "allreduce");
  measured(CommKind::kOther, x.size() * sizeof(int64_t) * size_t(size_ - 1),
           [&] { MPI_Allreduce(MPI_IN_PLACE, x.data(), n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD); });
}

int64_t Comm::allreduce_max(int64_t x) const {
  if (!distributed()) return x;
  int64_t out = 0;
  measured(CommKind::kOther, sizeof(int64_t) * size_t(size_ - 1),
           [&] { MPI_Allreduce(&x, &out, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD); });
  return out;
}

std::vector<double> Comm::allgather(std::span<const double> local) const {
  std::vector<double> out(local.size() * static_cast<size_t>(size_));
  if (!distributed()) {
    std::copy(local.begin(), local.end(), out.begin());
    return out;
  }
  const int n = as_count(local.size(), "allgather");
  measured(CommKind::kOther, local.size() * sizeof(double) * size_t(size_ - 1),
           [&] { MPI_Allgather(local.data(), n, MPI_DOUBLE, out.data(), n, MPI_DOUBLE, MPI_COMM_WORLD); });
  return out;
}

std::vector<double> Comm::allgatherv(std::span<const double> local, std::span<const int64_t> counts) const {
  TS_ASSERT(counts.size() == static_cast<size_t>(size_) && counts[size_t(rank_)] == int64_t(local.size()));
  std::vector<int> cnt(counts.size()), displ(counts.size());
  size_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    displ[r] = as_count(total, "allgatherv");
    cnt[r] = as_count(size_t(counts[r]), "allgatherv");
    total += size_t(counts[r]);
  }
  std::vector<double> out(total);
  if (!distributed()) {
    std::copy(local.begin(), local.end(), out.begin());
    return out;
  }
  measured(CommKind::kOther, local.size() * sizeof(double) * size_t(size_ - 1), [&] {
    MPI_Allgatherv(local.data(), cnt[size_t(rank_)], MPI_DOUBLE, out.data(), cnt.data(), displ.data(), MPI_DOUBLE,
                   MPI_COMM_WORLD);
  });
  return out;
}

std::vector<double> Comm::allreduce_sum_ordered(std::span<const double> x) const {
  if (!distributed()) return {x.begin(), x.end()};
  const std::vector<double> all = allgather(x);
  std::vector<double> sum(all.begin(), all.begin() + std::ptrdiff_t(x.size()));
  for (int r = 1; r < size_; ++r)
    for (size_t i = 0; i < x.size(); ++i) sum[i] += all[size_t(r) * x.size() + i];
  return sum;
}

size_t Comm::reduce_scatter_sum(std::span<float> buf, std::span<const Range> shards, size_t bucket_elems) const {
  TS_ASSERT(shards.size() == static_cast<size_t>(size_) && bucket_elems > 0);
  if (!distributed()) return 0;
  as_count(buf.size(), "reduce-scatter buffer");
  const size_t N = shards.size(), me = size_t(rank_);
  // Round j: every rank r reduces the j-th bucket of its own shard, so all ranks exchange
  // the same number of rounds and each round's messages are at most one bucket per peer.
  size_t rounds = 0;
  for (const Range& s : shards) rounds = std::max(rounds, (s.size() + bucket_elems - 1) / bucket_elems);
  // Kept between calls: a fresh zero-filled N-bucket vector per step cost page faults and a
  // memset of 8 MiB (N = 2) every step.
  std::vector<float>& scratch = rs_scratch_;
  if (scratch.size() < N * bucket_elems) scratch.resize(N * bucket_elems);
  std::vector<int> scount(N), sdispl(N), rcount(N), rdispl(N);
  size_t sent = 0;
  for (size_t j = 0; j < rounds; ++j) {
    auto bucket = [&](size_t r) {
      const size_t b = std::min(shards[r].end, shards[r].begin + j * bucket_elems);
      return Range{b, std::min(shards[r].end, b + bucket_elems)};
    };
    const Range mine = bucket(me);
    size_t round_sent = 0;
    for (size_t q = 0; q < N; ++q) {
      const Range theirs = bucket(q);
      scount[q] = static_cast<int>(theirs.size());
      sdispl[q] = static_cast<int>(theirs.begin);
      rcount[q] = static_cast<int>(mine.size());
      rdispl[q] = static_cast<int>(q * bucket_elems);
      if (q != me) round_sent += theirs.size() * sizeof(float);
    }
    measured(CommKind::kGradients, round_sent, [&] {
      MPI_Alltoallv(buf.data(), scount.data(), sdispl.data(), MPI_FLOAT, scratch.data(), rcount.data(),
                    rdispl.data(), MPI_FLOAT, MPI_COMM_WORLD);
    });
    sent += round_sent;
    // Left fold in rank order: the sum's bits do not depend on who received what when.
    float* out = buf.data() + mine.begin;
    const size_t n = mine.size();
    std::memcpy(out, scratch.data(), n * sizeof(float));
    for (size_t q = 1; q < N; ++q) {
      const float* in = scratch.data() + q * bucket_elems;
      for (size_t i = 0; i < n; ++i) out[i] += in[i];
    }
  }
  return sent;
}

size_t Comm::allgather_inplace(std::span<float> buf, std::span<const Range> shards) const {
  TS_ASSERT(shards.size() == static_cast<size_t>(size_));
  if (!distributed()) return 0;
  std::vector<int> cnt(shards.size()), displ(shards.size());
  for (size_t r = 0; r < shards.size(); ++r) {
    cnt[r] = as_count(shards[r].size(), "all-gather shard");
    displ[r] = as_count(shards[r].begin, "all-gather offset");
  }
  const size_t sent = shards[size_t(rank_)].size() * sizeof(float) * (shards.size() - 1);
  measured(CommKind::kGradients, sent, [&] {
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf.data(), cnt.data(), displ.data(), MPI_FLOAT,
                   MPI_COMM_WORLD);
  });
  return sent;
}

void Comm::gatherv_bytes(std::span<const std::byte> local, std::span<const int64_t> counts, std::span<std::byte> out,
                         int root) const {
  TS_ASSERT(counts.size() == static_cast<size_t>(size_) && counts[size_t(rank_)] == int64_t(local.size()));
  if (!distributed()) {
    TS_ASSERT(out.size() >= local.size());
    std::copy(local.begin(), local.end(), out.begin());
    return;
  }
  std::vector<int> cnt(counts.size()), displ(counts.size());
  size_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    displ[r] = as_count(total, "gather offset");
    cnt[r] = as_count(size_t(counts[r]), "gather");
    total += size_t(counts[r]);
  }
  if (rank_ == root) TS_ASSERT(out.size() >= total);
  measured(CommKind::kOther, rank_ == root ? 0 : local.size(), [&] {
    MPI_Gatherv(local.data(), cnt[size_t(rank_)], MPI_BYTE, rank_ == root ? out.data() : nullptr, cnt.data(),
                displ.data(), MPI_BYTE, root, MPI_COMM_WORLD);
  });
}

void Comm::alltoall(std::span<const int64_t> send, std::span<int64_t> recv) const {
  TS_ASSERT(send.size() == recv.size() && send.size() % size_t(size_) == 0);
  if (!distributed()) {
    std::copy(send.begin(), send.end(), recv.begin());
    return;
  }
  const int n = as_count(send.size() / size_t(size_), "all-to-all");
  measured(CommKind::kExperts, size_t(n) * sizeof(int64_t) * size_t(size_ - 1),
           [&] { MPI_Alltoall(send.data(), n, MPI_INT64_T, recv.data(), n, MPI_INT64_T, MPI_COMM_WORLD); });
}

size_t Comm::alltoallv_bytes(const void* send, std::span<const int64_t> send_bytes, void* recv,
                             std::span<const int64_t> recv_bytes) const {
  const size_t N = size_t(size_);
  TS_ASSERT(send_bytes.size() == N && recv_bytes.size() == N);
  std::vector<int> scount(N), sdispl(N), rcount(N), rdispl(N);
  size_t soff = 0, roff = 0, sent = 0;
  for (size_t q = 0; q < N; ++q) {
    scount[q] = as_count(size_t(send_bytes[q]), "all-to-all block");
    rcount[q] = as_count(size_t(recv_bytes[q]), "all-to-all block");
    sdispl[q] = as_count(soff, "all-to-all offset");
    rdispl[q] = as_count(roff, "all-to-all offset");
    soff += size_t(send_bytes[q]);
    roff += size_t(recv_bytes[q]);
    if (q != size_t(rank_)) sent += size_t(send_bytes[q]);
  }
  if (!distributed()) {
    TS_ASSERT(send_bytes[0] == recv_bytes[0]);
    if (send_bytes[0] > 0) std::memcpy(recv, send, size_t(send_bytes[0]));
    return 0;
  }
  measured(CommKind::kExperts, sent, [&] {
    MPI_Alltoallv(send, scount.data(), sdispl.data(), MPI_BYTE, recv, rcount.data(), rdispl.data(), MPI_BYTE,
                  MPI_COMM_WORLD);
  });
  return sent;
}

}  // namespace tinyseek::dist
