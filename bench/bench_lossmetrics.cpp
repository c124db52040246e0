// Loss and evaluation benchmark: FTL / batch-hard forward+backward at training batch sizes, and the
// exact retrieval evaluation (ranking + all metrics + chance floors) at growing gallery sizes.
// The Python peer for the losses is scripts/bench_loss_peer.py. Results: docs/benchmarks.md.
//
//   OMP_WAIT_POLICY=PASSIVE build/bench/bench_lossmetrics [--threads 2] [--dim 2560]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "fundus/core/rng.h"
#include "fundus/eval/retrieval_eval.h"
#include "fundus/loss/baseline_losses.h"
#include "fundus/loss/fine_triplet.h"
#include "fundus/model/runtime.h"

using namespace fundus;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename Fn>
double median_ms(Fn fn, int reps) {
  std::vector<double> t;
  fn();  // warm-up
  for (int i = 0; i < reps; ++i) {
    double t0 = now();
    fn();
    t.push_back((now() - t0) * 1e3);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int64_t dim = 2560;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--threads") threads = std::stoi(argv[i + 1]);
    if (a == "--dim") dim = std::stoll(argv[i + 1]);
  }
  set_compute_threads(threads);
  torch::manual_seed(0);
  std::printf("losses (forward + backward, float32, dim %lld, %d threads), median ms\n", (long long)dim, threads);
  for (int64_t batch : {16, 32, 64}) {
    auto x = torch::nn::functional::normalize(torch::randn({batch, dim}),
                                              torch::nn::functional::NormalizeFuncOptions().dim(1));
    auto g = torch::randint(0, 5, {batch}, torch::kLong);
    auto r = torch::rand({batch}) * 0.8 + 0.2;
    double ftl = median_ms(
        [&] {
          auto xi = x.clone().requires_grad_(true);
          fine_triplet_loss(xi, r, g).backward();
        },
        200);
    double bh = median_ms(
        [&] {
          auto xi = x.clone().requires_grad_(true);
          batch_hard_triplet_loss(xi, g, 0.1).backward();
        },
        200);
    std::printf("  B=%-3lld FTL %.3f  batch-hard %.3f\n", (long long)batch, ftl, bh);
  }

  std::printf("evaluation (leave-one-out, dim %lld, %d threads)\n", (long long)dim, threads);
  for (int64_t n : {356, 2000, 5000}) {
    Rng rng(1);
    std::vector<float> v(size_t(n * dim));
    for (auto& e : v) e = float(rng.normal());
    EvalSet set{{v.data(), n, dim}, {}, {}};
    for (int64_t i = 0; i < n; ++i) {
      set.keys.push_back({"c" + std::to_string(i), "p" + std::to_string(i / 2)});
      set.grades.push_back(int(rng.below(5)));
    }
    EvalOptions o;
    o.threads = threads;
    o.progress = false;
    double t0 = now();
    auto rep = evaluate_retrieval(set, set, o);
    double dt = now() - t0;
    std::printf("  N=%-5lld %.3f s  (%.0f queries/s, micro P@10 %.3f vs chance %.3f)\n", (long long)n, dt,
                double(n) / dt, rep.value("micro", "P@10"), rep.chance("micro", "P@10"));
  }
  return 0;
}
