// The MPI communicator of a run (DESIGN.md §2 dist/): rank, size and the few collectives
// data parallelism needs, each with a FIXED combination order so a run's bits depend only
// on its data and rank count, never on MPI's choice of algorithm or message timing.
//
// Launch model: `mpirun -np N tinyseek ...` sets OMPI_COMM_WORLD_SIZE (PMIx/PMI variables
// for other launchers); only then does init() call MPI_Init. A binary started without
// mpirun never touches MPI and world() is a single-process communicator (rank 0 of 1) whose
// collectives are copies, so the plain binary and the in-process tests run unchanged.
//
// Errors: MPI's default handler (MPI_ERRORS_ARE_FATAL) stays in place. A rank that dies
// (killed, crashed) makes mpirun end the whole job with a message naming the rank, PID and
// signal; a rank that throws calls abort_job(), which prints the error and MPI_Abort()s
// every rank, so no rank waits forever in a collective.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tinyseek::dist {

// What a communicator measured of its own MPI calls, per kind of traffic (distributed runs
// only: a single process counts nothing and pays nothing).
//   kGradients: reduce_scatter_sum + allgather_inplace (data-parallel / ZeRO-1 gradients and
//               parameters, dense part under expert parallelism);
//   kExperts:   alltoall + alltoallv_bytes (expert parallelism's row counts and token rows);
//   kOther:     everything else (norm and loss reductions, load counts, checkpoint gathers).
// bytes_sent is the payload this rank hands to MPI for other ranks (its own block excluded):
// exact for the two all-to-alls, and for the all-gather and the other collectives the
// logical volume (this rank's part once per peer) whatever algorithm MPI picks.
// seconds is the wall time inside the MPI calls (not the packing or the reduce-scatter's
// additions between them); it includes waiting for slower ranks. With split_wait on, every
// call is preceded by an MPI_Barrier whose time is wait_seconds (the skew between ranks
// arriving), so seconds - wait_seconds is the transfer proper.
enum class CommKind { kGradients = 0, kExperts = 1, kOther = 2 };
struct CommStats {
  size_t bytes_sent = 0;
  double seconds = 0;       // in MPI calls, the barriers of split_wait included
  double wait_seconds = 0;  // in split_wait's barriers
  int64_t calls = 0;
};

// A contiguous range [begin, end) of elements of a flat buffer.
struct Range {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

class Comm {
 public:
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }

  void barrier() const;

  // Counters since the start (see CommStats); benches take differences around a step.
  const CommStats& stats(CommKind k) const { return stats_[static_cast<size_t>(k)]; }
  // Barrier before every measured call to split waiting from transfer (`bench step` only:
  // it adds a barrier's latency per call, so training leaves it off).
  void set_split_wait(bool on) { split_wait_ = on; }

  // Σ over ranks of exact integers (order-independent): MoE load counts, flags.
  void allreduce_sum(std::span<int64_t> x) const;
  int64_t allreduce_max(int64_t x) const;
  // Every rank's `local` (same length everywhere), concatenated in rank order on every rank.
  std::vector<double> allgather(std::span<const double> local) const;
  // Like allgather for variable lengths: rank r contributes counts[r] values.
  std::vector<double> allgatherv(std::span<const double> local, std::span<const int64_t> counts) const;
  // Σ_r x_r for doubles, computed as ((x_0 + x_1) + x_2) + ... in rank order on every rank.
  std::vector<double> allreduce_sum_ordered(std::span<const double> x) const;

  // Reduce-scatter of an FP32 buffer over `shards` (shards[r] = rank r's range; they tile
  // the buffer in rank order). Afterwards buf[shards[rank()]] = Σ_r buf_r[...] summed as
  // ((buf_0 + buf_1) + buf_2) + ... (left fold in rank order); the rest of buf is left
  // as it was. Works in buckets of at most bucket_elems elements of the buffer, so the
  // receive scratch is size · bucket_elems floats (kept between calls), not a whole shard
  // per peer.
  // Returns the bytes this rank sent.
  size_t reduce_scatter_sum(std::span<float> buf, std::span<const Range> shards, size_t bucket_elems) const;
  // All-gather in place: afterwards every rank's buf[shards[r]] holds rank r's values.
  size_t allgather_inplace(std::span<float> buf, std::span<const Range> shards) const;
  // Rank `root` receives every rank's `local` bytes into out (rank order, lengths from
  // counts); other ranks pass an empty out.
  void gatherv_bytes(std::span<const std::byte> local, std::span<const int64_t> counts, std::span<std::byte> out,
                     int root) const;
  // All-to-all of n = send.size() / size() integers per peer: recv[s·n + i] = rank s's
  // send[rank()·n + i] (expert parallelism's per-expert row counts).
  void alltoall(std::span<const int64_t> send, std::span<int64_t> recv) const;
  // All-to-all of variable byte blocks: this rank's block for peer q is send_bytes[q] bytes,
  // the blocks back to back in rank order from `send`; rank s's block for this rank lands
  // at recv + Σ_{s'<s} recv_bytes[s'] (recv_bytes must match what the peers send). Returns
  // the bytes this rank sent to other ranks (its own block is a local copy).
  size_t alltoallv_bytes(const void* send, std::span<const int64_t> send_bytes, void* recv,
                         std::span<const int64_t> recv_bytes) const;

 private:
  friend Comm& world();
  friend void init(int* argc, char*** argv);
  // Runs `call` (one MPI call) and adds its wall time, `bytes` and the split_wait barrier
  // to stats_[kind].
  template <class F>
  void measured(CommKind kind, size_t bytes, F&& call) const;

  int rank_ = 0, size_ = 1;
  bool split_wait_ = false;
  mutable CommStats stats_[3];
  mutable std::vector<float> rs_scratch_;  // reduce_scatter_sum's receive buckets
};

// The process's communicator (single-process until init() found an MPI launcher).
Comm& world();
// True when the environment says mpirun (or another MPI launcher) started this process.
bool launched_by_mpi();
// MPI_Init when launched_by_mpi(); a no-op otherwise. Call once, first thing in main().
void init(int* argc, char*** argv);
// MPI_Finalize if init() initialised MPI.
void finalize();
// Prints `message` to stderr (prefixed by the rank when distributed) and ends the job:
// MPI_Abort on every rank when distributed, else nothing (the caller returns its status).
void abort_job(const std::string& message, int status);

}  // namespace tinyseek::dist
