// Training and inference speed of the retrieval network (RetrievalNet), for bench/run_bench_model.sh.
//
//   bench_model --model cpu|densenet --mode train|infer [--batch N] [--size S] [--iters N]
//               [--warmup N] [--threads N] [--channels-last]
//
// cpu: the `cpu` preset (MobileNetV2 + mirror attention + GeM, concat); densenet: the `paper` preset
// (DenseNet-121 + mirror attention + GeM). train = forward + backward + Adam step on a fixed linear
// loss of the descriptor; infer = eval mode under NoGradGuard. Prints one JSON line with the median
// time per iteration and images/s (input images, not backbone passes: each image is 3 views).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/model/retrieval_net.h"
#include "fundus/model/runtime.h"

using namespace fundus;

namespace {

struct Options {
  std::string model = "cpu", mode = "infer";
  int batch = 0, size = 0, iters = 6, warmup = 2, threads = 2;
  bool channels_last = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "missing value for " << a << "\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--mode") o.mode = next();
    else if (a == "--batch") o.batch = std::atoi(next().c_str());
    else if (a == "--size") o.size = std::atoi(next().c_str());
    else if (a == "--iters") o.iters = std::atoi(next().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(next().c_str());
    else if (a == "--threads") o.threads = std::atoi(next().c_str());
    else if (a == "--channels-last") o.channels_last = true;
    else {
      std::cerr << "unknown option " << a << "\n";
      std::exit(2);
    }
  }
  if (o.model != "cpu" && o.model != "densenet") {
    std::cerr << "--model must be cpu or densenet\n";
    std::exit(2);
  }
  if (o.batch == 0) o.batch = o.model == "cpu" ? 16 : 8;
  if (o.size == 0) o.size = o.model == "cpu" ? 224 : 256;
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  set_compute_threads(o.threads);
  seed_torch(0);
  ModelConfig config = ModelConfig::from_json(model_preset(o.model == "cpu" ? "cpu" : "paper"));
  RetrievalNet net(config, false);
  torch::Tensor x = torch::rand({o.batch, 3, o.size, o.size});
  net->use_channels_last(o.channels_last);
  torch::Tensor w = torch::randn({o.batch, net->descriptor_dim()});
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(1e-4));
  std::vector<double> times;
  bool train = o.mode == "train";
  train ? net->train() : net->eval();
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (train) {
      adam.zero_grad();
      torch::Tensor loss = (net->forward(x).descriptor * w).sum();
      loss.backward();
      adam.step();
    } else {
      torch::NoGradGuard no_grad;
      net->forward(x);
    }
    if (i >= o.warmup) times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  double median = times[times.size() / 2];
  std::cout << Json{{"side", "cpp"},
                    {"model", o.model},
                    {"mode", o.mode},
                    {"batch", o.batch},
                    {"size", o.size},
                    {"threads", o.threads},
                    {"channels_last", o.channels_last},
                    {"iters", o.iters},
                    {"s_per_iter_median", median},
                    {"img_per_s", o.batch / median}}
                   .dump()
            << std::endl;
  return 0;
}
