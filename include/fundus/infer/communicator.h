// The collectives of a distributed run, on PyTorch's own engine (c10d): rendezvous through a
// c10d::TCPStore served by rank 0 (or by torchrun's agent), then a c10d::ProcessGroupGloo for CPU
// tensors, or c10d::ProcessGroupNCCL for CUDA tensors in builds whose LibTorch has NCCL
// (USE_C10D_NCCL; compiled out otherwise).
//
//   Communicator comm(world, torch::kCPU);        // blocks until all world_size ranks have joined
//   comm.all_reduce_sum(grad);                     // in place
//   torch::Tensor all = comm.all_gather_rows(x);   // [n_0 + n_1 + ..., ...] in rank order
//
// Every rank must call the same collectives in the same order with matching shapes (all_gather_rows
// allows different row counts). Each call blocks until it completes.
// Failure: a peer that exits closes its connections, so the next collective of the others throws at
// once; a peer that hangs (or a machine that vanishes) makes it throw after world.timeout_seconds.
// Either way the error is a fundus::Error naming this rank, the operation and what to do (restart
// from the last checkpoint with --resume); collectives are never retried.
// Thread safety: one thread at a time per Communicator.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "fundus/infer/launcher.h"

namespace fundus {

class Communicator {
 public:
  /// Rendezvous and process group creation. `device`: kCPU -> Gloo; kCUDA -> NCCL (throws in builds
  /// without NCCL). `agreement`: text that must be identical on every rank (the options that shape
  /// the computation, one "name=value" per line; the world size is added here). Every rank
  /// publishes it in the store before any process group exists; a rank that differs from rank 0
  /// makes both fail at once, naming the first differing line. Throws fundus::Error when the store
  /// cannot be reached, the ranks disagree, or a rank does not arrive within the timeout.
  Communicator(const DistributedOptions& world, torch::Device device, const std::string& agreement = "");
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return world_.rank; }
  int world_size() const { return world_.world_size; }
  bool is_main() const { return world_.rank == 0; }
  const DistributedOptions& world() const { return world_; }
  /// "gloo" or "nccl".
  std::string backend() const;
  /// Where collective tensors must live: CPU for Gloo, the CUDA device for NCCL.
  torch::Device device() const;

  /// Elementwise sum over ranks, in place. `t` must be contiguous (any dtype Gloo handles).
  void all_reduce_sum(torch::Tensor& t);
  /// The same-shaped tensor of every rank, stacked: [world_size, ...t.shape].
  torch::Tensor all_gather(const torch::Tensor& t);
  /// Rows of every rank concatenated in rank order: [n_0 + ... + n_{W-1}, ...]. Row counts may
  /// differ (padded internally); trailing shapes and dtype must agree. Not differentiable.
  /// `counts`, when given, receives n_0 .. n_{W-1}.
  torch::Tensor all_gather_rows(const torch::Tensor& t, std::vector<int64_t>* counts = nullptr);
  /// Root's values into `t` on every rank, in place (same shape and dtype everywhere).
  void broadcast(torch::Tensor& t, int root = 0);
  /// Root's bytes on every rank (the argument is ignored elsewhere).
  std::string broadcast_bytes(const std::string& bytes, int root = 0);
  void barrier();
  /// Throws fundus::Error on every rank (naming `what` and the ranks that differ from rank 0) unless
  /// `value` is the same on all of them. One all_gather of a 64-bit hash.
  void check_same_everywhere(const std::string& what, const std::string& value);

  /// Wall time spent inside collectives so far (for the reported communication cost).
  double collective_seconds() const { return seconds_; }

 private:
  struct Impl;
  template <class F>
  void run(const char* what, F&& f);
  DistributedOptions world_;
  std::unique_ptr<Impl> impl_;
  double seconds_ = 0;
};

}  // namespace fundus
