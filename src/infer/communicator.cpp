#include "fundus/infer/communicator.h"

#include <chrono>
#include <cstring>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/log.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {

// ProcessGroupGloo/NCCL derive from c10d::ProcessGroup in 1.13 and from c10d::Backend in 2.x; calling
// the collectives on the concrete class works in both (stack.md section 7), so hold it by its type.
struct Backend {
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& t) = 0;
  virtual c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& out,
                                                   std::vector<at::Tensor>& in) = 0;
  virtual c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& t, int root) = 0;
  virtual c10::intrusive_ptr<c10d::Work> barrier() = 0;
};

template <class PG>
struct BackendOf final : Backend {
  BackendOf(c10::intrusive_ptr<PG> g, std::string n) : pg(std::move(g)), label(std::move(n)) {}
  std::string name() const override { return label; }
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& t) override { return pg->allreduce(t); }
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& out,
                                           std::vector<at::Tensor>& in) override {
    return pg->allgather(out, in);
  }
  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& t, int root) override {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    return pg->broadcast(t, o);
  }
  c10::intrusive_ptr<c10d::Work> barrier() override { return pg->barrier(); }
  c10::intrusive_ptr<PG> pg;
  std::string label;
};

std::string first_line(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10 ? c10->what_without_backtrace() : e.what();
  size_t nl = text.find('\n');
  return nl == std::string::npos ? text : text.substr(0, nl);
}

const char* kRestartHint =
    "another worker has stopped or cannot be reached (its own error says why); restart the run "
    "from its last checkpoint with --resume (docs/scaling.md)";

std::string text_of(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }

// The first line where the texts of ranks `ra` and `rb` differ: "rank 1: '<line>', rank 0: '<line>'".
std::string first_difference(int ra, const std::string& a, int rb, const std::string& b) {
  const std::vector<std::string> la = split(a, '\n'), lb = split(b, '\n');
  for (size_t i = 0; i < std::max(la.size(), lb.size()); ++i) {
    const std::string x = i < la.size() ? la[i] : "(nothing)", y = i < lb.size() ? lb[i] : "(nothing)";
    if (x != y) return "rank " + std::to_string(ra) + ": '" + x + "', rank " + std::to_string(rb) + ": '" + y + "'";
  }
  return "same lines";
}

// Every rank publishes its agreement text under join/<rank>; rank 0 reads every other rank's, the
// others read rank 0's. Disagreement fails both sides before any process group waits on a peer
// that will never come (a rank with another WORLD_SIZE would otherwise hang the Gloo rendezvous).
void check_join(c10d::Store& store, const DistributedOptions& world, const std::string& mine) {
  store.set("join/" + std::to_string(world.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  auto read = [&](int r) {
    try {
      return text_of(store.get("join/" + std::to_string(r)));
    } catch (const std::exception& e) {
      FUNDUS_THROW(world.describe() << ": rank " << r << " did not join within " << world.timeout_seconds
                                    << " s, or has stopped (not started, or started with another "
                                       "WORLD_SIZE/--nproc/--nnodes? its own error says more): "
                                    << first_line(e));
    }
  };
  const auto differs = [&](int r, const std::string& theirs) {
    FUNDUS_THROW(world.describe() << ": rank " << r << " was started with other options than rank " << world.rank
                                  << " (" << first_difference(r, theirs, world.rank, mine)
                                  << "); start every rank with the same command line and WORLD_SIZE");
  };
  if (world.rank != 0) {
    const std::string root = read(0);
    if (root != mine) differs(0, root);
    return;
  }
  for (int r = 1; r < world.world_size; ++r) {
    const std::string theirs = read(r);
    if (theirs != mine) differs(r, theirs);
  }
}

}  // namespace

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  std::unique_ptr<Backend> backend;
  torch::Device device{torch::kCPU};
};

Communicator::Communicator(const DistributedOptions& world, torch::Device device, const std::string& agreement)
    : world_(world), impl_(std::make_unique<Impl>()) {
  FUNDUS_CHECK(world.world_size >= 1 && world.rank >= 0 && world.rank < world.world_size,
               "distributed: rank " << world.rank << " outside 0.." << world.world_size - 1);
  impl_->device = device;
  const auto timeout = std::chrono::milliseconds(int64_t(world.timeout_seconds) * 1000);
  try {
    c10d::TCPStoreOptions so;
    so.port = uint16_t(world.master_port);
    so.isServer = world.rank == 0 && !world.agent_store;
    so.numWorkers = size_t(world.world_size);
    so.waitWorkers = false;  // check_join waits for each rank by name, and says which is missing
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(world.master_addr, so);
    impl_->store = c10::make_intrusive<c10d::PrefixStore>(world.store_prefix, tcp);
  } catch (const std::exception& e) {
    FUNDUS_THROW(world.describe() << ": cannot join the run's store at " << world.master_addr << ":"
                                  << world.master_port << " within " << world.timeout_seconds
                                  << " s (is rank 0 running, and the address reachable from here?): " << first_line(e));
  }
  check_join(*impl_->store, world, "world_size=" + std::to_string(world.world_size) + "\n" + agreement);
  try {
    if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, world.rank, world.world_size, opts);
      impl_->backend = std::make_unique<BackendOf<c10d::ProcessGroupNCCL>>(pg, "nccl");
#else
      FUNDUS_THROW(
          "distributed: CUDA tensors need ProcessGroupNCCL, and this LibTorch was built without NCCL "
          "(USE_C10D_NCCL); use --device cpu");
#endif
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      // Bind where the peers can reach us: GLOO_SOCKET_IFNAME if set, else the address on the
      // route to rank 0's machine (the hostname may resolve to 127.0.1.1 on Debian).
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else
        opts->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForHostname(local_address_towards(world.master_addr)));
      auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, world.rank, world.world_size, opts);
      impl_->backend = std::make_unique<BackendOf<c10d::ProcessGroupGloo>>(pg, "gloo");
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    FUNDUS_THROW(world.describe() << ": cannot create the process group: " << first_line(e));
  }
  FUNDUS_DEBUG(world.describe() << ": joined (" << backend() << ", store " << world.master_addr << ":"
                                << world.master_port << ")");
}

Communicator::~Communicator() = default;

std::string Communicator::backend() const { return impl_->backend->name(); }
torch::Device Communicator::device() const { return impl_->device; }

template <class F>
void Communicator::run(const char* what, F&& f) {
  const auto start = std::chrono::steady_clock::now();
  try {
    f();
  } catch (const std::exception& e) {
    FUNDUS_THROW(world_.describe() << ": " << what << " failed: " << first_line(e) << "; " << kRestartHint);
  }
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Communicator::all_reduce_sum(torch::Tensor& t) {
  FUNDUS_CHECK(t.is_contiguous(), "all_reduce_sum: tensor must be contiguous");
  if (world_size() == 1) return;
  run("all_reduce", [&] {
    std::vector<at::Tensor> v{t};
    impl_->backend->allreduce(v)->wait();
  });
}

torch::Tensor Communicator::all_gather(const torch::Tensor& t) {
  torch::Tensor in = t.contiguous();
  if (world_size() == 1) return in.unsqueeze(0);
  std::vector<int64_t> shape{world_size()};
  for (int64_t s : in.sizes()) shape.push_back(s);
  torch::Tensor out = torch::empty(shape, in.options());
  run("all_gather", [&] {
    std::vector<at::Tensor> input{in};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < world_size(); ++r) output[0].push_back(out[r]);
    impl_->backend->allgather(output, input)->wait();
  });
  return out;
}

torch::Tensor Communicator::all_gather_rows(const torch::Tensor& t, std::vector<int64_t>* counts_out) {
  FUNDUS_CHECK(t.dim() >= 1, "all_gather_rows: expected a tensor with rows, got a scalar");
  if (world_size() == 1) {
    if (counts_out) *counts_out = {t.size(0)};
    return t;
  }
  torch::Tensor counts =
      all_gather(torch::tensor({t.size(0)}, torch::TensorOptions(torch::kInt64).device(t.device()))).cpu();
  const int64_t* n = counts.data_ptr<int64_t>();
  int64_t most = 0;
  for (int r = 0; r < world_size(); ++r) most = std::max(most, n[r]);
  if (counts_out) counts_out->assign(n, n + world_size());
  std::vector<int64_t> padded_shape(t.sizes().begin(), t.sizes().end());
  padded_shape[0] = most;
  torch::Tensor padded = torch::zeros(padded_shape, t.options());
  if (t.size(0) > 0) padded.slice(0, 0, t.size(0)).copy_(t);
  torch::Tensor all = all_gather(padded);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world_size(); ++r) parts.push_back(all[r].slice(0, 0, n[r]));
  return torch::cat(parts, 0);
}

void Communicator::broadcast(torch::Tensor& t, int root) {
  FUNDUS_CHECK(t.is_contiguous(), "broadcast: tensor must be contiguous");
  if (world_size() == 1) return;
  run("broadcast", [&] {
    std::vector<at::Tensor> v{t};
    impl_->backend->broadcast(v, root)->wait();
  });
}

std::string Communicator::broadcast_bytes(const std::string& bytes, int root) {
  if (world_size() == 1) return bytes;
  const auto on = torch::TensorOptions(torch::kInt64).device(impl_->device);
  torch::Tensor size = torch::tensor({int64_t(bytes.size())}, on);
  broadcast(size, root);
  const int64_t n = size.cpu().item<int64_t>();
  torch::Tensor data = torch::empty({n}, torch::TensorOptions(torch::kUInt8));
  if (rank() == root && n > 0) std::memcpy(data.data_ptr<uint8_t>(), bytes.data(), size_t(n));
  data = data.to(impl_->device);
  if (n > 0) broadcast(data, root);
  data = data.cpu();
  return std::string(reinterpret_cast<const char*>(data.data_ptr<uint8_t>()), size_t(n));
}

void Communicator::check_same_everywhere(const std::string& what, const std::string& value) {
  if (world_size() == 1) return;
  const torch::Tensor all =
      all_gather(torch::tensor({int64_t(fnv1a64(value))}, torch::TensorOptions(torch::kInt64).device(impl_->device)))
          .cpu();
  const int64_t* h = all.data_ptr<int64_t>();
  std::vector<std::string> differ;
  for (int r = 1; r < world_size(); ++r)
    if (h[r] != h[0]) differ.push_back(std::to_string(r));
  FUNDUS_CHECK(differ.empty(), world_.describe()
                                   << ": " << what << " differs between rank 0 and rank(s) " << join(differ, ", ")
                                   << " (every machine must see the same files at the same paths)");
}

void Communicator::barrier() {
  if (world_size() == 1) return;
  run("barrier", [&] { impl_->backend->barrier()->wait(); });
}

}  // namespace fundus
