#include "fundus/train/distributed.h"

#include <chrono>
#include <map>

#include "fundus/core/error.h"
#include "fundus/model/sync_batchnorm.h"

namespace fundus {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Broadcasts rank 0's values of `tensors` in few collectives: one flat buffer per dtype and device.
void broadcast_tensors(Communicator& comm, const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  std::map<std::pair<int, std::string>, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors)
    if (t.defined() && t.numel() > 0) groups[{int(t.scalar_type()), t.device().str()}].push_back(t);
  for (auto& [key, group] : groups) {
    std::vector<torch::Tensor> flat;
    for (const auto& t : group) flat.push_back(t.detach().contiguous().view(-1));
    torch::Tensor buffer = torch::cat(flat).to(comm.device());
    comm.broadcast(buffer, 0);
    buffer = buffer.to(group.front().device());
    int64_t offset = 0;
    for (auto& t : group) {
      const int64_t n = t.numel();
      t.detach().copy_(buffer.slice(0, offset, offset + n).view(t.sizes()));
      offset += n;
    }
  }
}

}  // namespace

// The collectives SyncBatchNorm2d needs, timed.
class DataParallel::Sync : public BatchNormSync {
 public:
  explicit Sync(Communicator& comm) : comm_(comm) {}
  torch::Tensor all_gather(const torch::Tensor& t) override {
    const auto start = std::chrono::steady_clock::now();
    torch::Tensor out = comm_.all_gather(t.to(comm_.device())).to(t.device());
    seconds += seconds_since(start);
    return out;
  }
  void all_reduce_sum(torch::Tensor& t) override {
    const auto start = std::chrono::steady_clock::now();
    torch::Tensor buffer = t.to(comm_.device()).contiguous();
    comm_.all_reduce_sum(buffer);
    if (!buffer.is_same(t)) t.copy_(buffer);
    seconds += seconds_since(start);
  }
  double seconds = 0;

 private:
  Communicator& comm_;
};

DataParallel::DataParallel(Communicator& comm, torch::nn::Module& net)
    : comm_(comm), net_(net), sync_(std::make_shared<Sync>(comm)) {
  set_batchnorm_sync(net_, sync_);
}

DataParallel::~DataParallel() { set_batchnorm_sync(net_, nullptr); }

DataParallel::LocalBatchNorm::LocalBatchNorm(DataParallel& dp) : dp_(dp) { set_batchnorm_sync(dp_.net_, nullptr); }
DataParallel::LocalBatchNorm::~LocalBatchNorm() { set_batchnorm_sync(dp_.net_, dp_.sync_); }

DataParallel::Timing DataParallel::timing() const { return {gradient_seconds_, sync_->seconds, gather_seconds_}; }

void DataParallel::broadcast_state(torch::nn::Module& module) {
  std::vector<torch::Tensor> all = module.parameters();
  for (const auto& b : module.buffers()) all.push_back(b);
  broadcast_tensors(comm_, all);
}

void DataParallel::broadcast_buffers(torch::nn::Module& module) { broadcast_tensors(comm_, module.buffers()); }

LossInputs DataParallel::gather_loss_inputs(const LossInputs& local) {
  const auto start = std::chrono::steady_clock::now();
  const torch::Tensor& d = local.descriptor;
  FUNDUS_CHECK(d.defined() && d.dim() == 2, "gather_loss_inputs: descriptor must be [B, dim]");
  FUNDUS_CHECK(local.grades.defined() && local.grades.numel() == d.size(0),
               "gather_loss_inputs: grades must have one entry per descriptor row");
  const int64_t rows = d.size(0);
  // Every rank has the same fields defined (same model), so the packed widths agree.
  const std::vector<const torch::Tensor*> fields = {&local.descriptor, &local.branch_h, &local.branch_v, &local.logits};
  std::vector<torch::Tensor> columns;
  for (const torch::Tensor* f : fields) {
    if (!f->defined()) continue;
    FUNDUS_CHECK(f->dim() == 2 && f->size(0) == rows,
                 "gather_loss_inputs: field of shape " << f->sizes() << " for " << rows << " rows");
    columns.push_back(f->detach().to(d.scalar_type()));
  }
  columns.push_back(local.grades.view({rows, 1}).to(d.device(), d.scalar_type()));
  torch::Tensor packed = torch::cat(columns, 1).contiguous();
  std::vector<int64_t> counts;
  torch::Tensor all = comm_.all_gather_rows(packed.to(comm_.device()), &counts).to(d.device());
  int64_t first = 0;
  for (int r = 0; r < rank(); ++r) first += counts[size_t(r)];
  const int64_t total = all.size(0);

  int64_t column = 0;
  auto rebuild = [&](const torch::Tensor& mine) -> torch::Tensor {
    if (!mine.defined()) return {};
    const int64_t width = mine.size(1);
    torch::Tensor others = all.slice(1, column, column + width).to(mine.scalar_type());
    column += width;
    // This rank's rows are its own tensor: the gradient of the global loss flows back through them.
    return torch::cat({others.slice(0, 0, first), mine, others.slice(0, first + rows, total)}, 0);
  };
  LossInputs out;
  out.descriptor = rebuild(local.descriptor);
  out.branch_h = rebuild(local.branch_h);
  out.branch_v = rebuild(local.branch_v);
  out.logits = rebuild(local.logits);
  out.grades = all.select(1, column).round().to(torch::kInt64);
  gather_seconds_ += seconds_since(start);
  return out;
}

bool DataParallel::reduce_gradients(const std::vector<torch::Tensor>& params, bool stop_vote, int64_t bucket_bytes) {
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  // Consecutive gradients of one dtype and device, up to bucket_bytes each.
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const int64_t size = grads[i].numel() * int64_t(grads[i].element_size());
    const bool same_kind = !buckets.empty() && grads[buckets.back().front()].scalar_type() == grads[i].scalar_type() &&
                           grads[buckets.back().front()].device() == grads[i].device();
    if (buckets.empty() || !same_kind || bytes + size > bucket_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += size;
  }
  bool any_stop = false;
  if (buckets.empty()) {
    torch::Tensor vote =
        torch::full({1}, stop_vote ? 1.0 : 0.0, torch::TensorOptions(torch::kFloat32).device(comm_.device()));
    comm_.all_reduce_sum(vote);
    any_stop = vote.item<double>() > 0;
  }
  for (size_t k = 0; k < buckets.size(); ++k) {
    const bool last = k + 1 == buckets.size();
    std::vector<torch::Tensor> flat;
    for (size_t i : buckets[k]) flat.push_back(grads[i].contiguous().view(-1));
    if (last) flat.push_back(torch::full({1}, stop_vote ? 1.0 : 0.0, flat.front().options()));
    torch::Tensor buffer = torch::cat(flat).to(comm_.device());
    comm_.all_reduce_sum(buffer);
    buffer = buffer.to(grads[buckets[k].front()].device());
    int64_t offset = 0;
    for (size_t i : buckets[k]) {
      torch::Tensor& g = grads[i];
      const int64_t n = g.numel();
      g.copy_(buffer.slice(0, offset, offset + n).view(g.sizes()));
      offset += n;
    }
    if (last) any_stop = buffer[offset].item<double>() > 0;
  }
  gradient_seconds_ += seconds_since(start);
  return any_stop;
}

}  // namespace fundus
