// Distributed training on c10d: shards, launch plans, collectives, synchronised BatchNorm, the
// global-batch loss and gradient, and the real thing: worker processes on loopback against one
// process (equivalence, resume with another world size, a dying worker, distributed embedding).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>

#include <torch/torch.h>

#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/data/sampler.h"
#include "fundus/infer/checkpoint.h"
#include "fundus/infer/communicator.h"
#include "fundus/infer/launcher.h"
#include "fundus/infer/run_config.h"
#include "fundus/loss/loss.h"
#include "fundus/model/runtime.h"
#include "fundus/model/sync_batchnorm.h"
#include "fundus/train/distributed.h"
#include "test_support.h"
#include "train_fixtures.h"

extern char** environ;  // POSIX: the process environment (global scope, not in a namespace)

using namespace fundus;

namespace {

// Sets (or, with nullptr, unsets) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// No launcher or torchrun variables from the environment the tests run in.
struct CleanLaunchEnv {
  ScopedEnv a{"FUNDUS_LAUNCHED", nullptr}, b{"WORLD_SIZE", nullptr}, c{"RANK", nullptr}, d{"LOCAL_RANK", nullptr},
      e{"MASTER_ADDR", nullptr}, f{"MASTER_PORT", nullptr}, g{"LOCAL_WORLD_SIZE", nullptr},
      h{"TORCHELASTIC_USE_AGENT_STORE", nullptr};
};

// Runs body(comm) on `world` threads of this process, one rank each, over a real TCPStore + Gloo
// on loopback; rethrows the first failure.
void run_ranks(int world, const std::function<void(Communicator&)>& body) {
  const int port = free_local_port();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        DistributedOptions o;
        o.world_size = world;
        o.rank = r;
        o.master_port = port;
        o.timeout_seconds = 120;
        Communicator comm(o, torch::kCPU);
        body(comm);
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

torch::Tensor rows_of(const torch::Tensor& full, int rank, int world) {
  auto [first, last] = shard_range(full.size(0), rank, world);
  return full.slice(0, first, last);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

TEST(Distributed, ShardRangeSplitsContiguouslyAndEvenly) {
  EXPECT_EQ(shard_range(10, 0, 3), (std::pair<int64_t, int64_t>(0, 4)));
  EXPECT_EQ(shard_range(10, 1, 3), (std::pair<int64_t, int64_t>(4, 7)));
  EXPECT_EQ(shard_range(10, 2, 3), (std::pair<int64_t, int64_t>(7, 10)));
  EXPECT_EQ(shard_range(1, 1, 2), (std::pair<int64_t, int64_t>(1, 1)));  // an empty share
  EXPECT_EQ(shard_range(20, 1, 2), (std::pair<int64_t, int64_t>(10, 20)));
  EXPECT_THROW(shard_range(10, 3, 3), Error);
  EXPECT_THROW(shard_range(10, 0, 0), Error);
}

TEST(Distributed, LaunchPlanFromOptionsAndTorchrunVariables) {
  CleanLaunchEnv clean;
  EXPECT_EQ(plan_launch({}).role, LaunchRole::single);
  LaunchOptions two;
  two.nproc = 2;
  LaunchPlan p = plan_launch(two);
  EXPECT_EQ(p.role, LaunchRole::launcher);
  EXPECT_EQ(p.world.world_size, 2);
  EXPECT_EQ(p.world.master_addr, "127.0.0.1");
  EXPECT_GT(p.world.master_port, 0);
  LaunchOptions nodes;
  nodes.nnodes = 3;
  nodes.node_rank = 2;
  nodes.nproc = 2;
  EXPECT_THROW(plan_launch(nodes), Error);  // several machines need --master-addr
  nodes.master_addr = "10.0.0.1";
  p = plan_launch(nodes);
  EXPECT_EQ(p.world.world_size, 6);
  EXPECT_EQ(p.world.rank, 4);  // node 2's first worker
  EXPECT_EQ(p.world.master_port, 29500);
  nodes.node_rank = 3;
  EXPECT_THROW(plan_launch(nodes), Error);

  // torchrun's variables make a worker.
  ScopedEnv ws("WORLD_SIZE", "4"), rk("RANK", "3"), lr("LOCAL_RANK", "1"), lws("LOCAL_WORLD_SIZE", "2"),
      ma("MASTER_ADDR", "10.1.2.3"), mp("MASTER_PORT", "29600"), restart("TORCHELASTIC_RESTART_COUNT", "2");
  p = plan_launch({});
  EXPECT_EQ(p.role, LaunchRole::worker);
  EXPECT_EQ(p.world.rank, 3);
  EXPECT_EQ(p.world.local_rank, 1);
  EXPECT_EQ(p.world.local_world_size, 2);
  EXPECT_EQ(p.world.master_addr, "10.1.2.3");
  EXPECT_EQ(p.world.master_port, 29600);
  EXPECT_EQ(p.world.store_prefix, "fundus/2");
  EXPECT_THROW(plan_launch(two), Error);  // --nproc under torchrun is a contradiction
  {
    ScopedEnv bad("RANK", "4");
    EXPECT_THROW(plan_launch({}), Error);
  }
  {
    ScopedEnv bad("MASTER_PORT", "http");
    EXPECT_THROW(plan_launch({}), Error);
  }
}

TEST(Distributed, CollectivesOverTcpStoreAndGloo) {
  run_ranks(3, [](Communicator& comm) {
    const int r = comm.rank();
    EXPECT_EQ(comm.backend(), "gloo");
    torch::Tensor x = torch::full({4}, double(r + 1), torch::kFloat64);
    comm.all_reduce_sum(x);
    EXPECT_TRUE(torch::allclose(x, torch::full({4}, 6.0, torch::kFloat64)));
    torch::Tensor g = comm.all_gather(torch::tensor({int64_t(r), int64_t(10 * r)}));
    EXPECT_TRUE(torch::equal(g, torch::tensor({0, 0, 1, 10, 2, 20}, torch::kInt64).view({3, 2})));
    // Uneven rows: rank r has r rows (rank 0 none) of the value r.
    std::vector<int64_t> counts;
    torch::Tensor rows = comm.all_gather_rows(torch::full({r, 2}, float(r)), &counts);
    EXPECT_EQ(counts, (std::vector<int64_t>{0, 1, 2}));
    EXPECT_TRUE(torch::equal(rows, torch::tensor({1.f, 1.f, 2.f, 2.f, 2.f, 2.f}).view({3, 2})));
    EXPECT_EQ(comm.broadcast_bytes(r == 0 ? std::string("from rank 0\0!", 13) : "ignored"),
              std::string("from rank 0\0!", 13));
    EXPECT_EQ(comm.broadcast_bytes(""), "");
    comm.barrier();
  });
}

// BatchNormSync over a Communicator (what DataParallel attaches inside the trainer).
class CommSync : public BatchNormSync {
 public:
  explicit CommSync(Communicator& c) : comm(c) {}
  torch::Tensor all_gather(const torch::Tensor& t) override { return comm.all_gather(t); }
  void all_reduce_sum(torch::Tensor& t) override { comm.all_reduce_sum(t); }
  Communicator& comm;
};

TEST(Distributed, SyncBatchNormEqualsBatchNormOnTheWholeBatch) {
  torch::manual_seed(3);
  // 8 images over 3 ranks (3 + 3 + 2), channels-last as in training, shifted so mean != 0.
  torch::Tensor x = (torch::randn({8, 4, 5, 5}) * 2 + 1).contiguous(torch::MemoryFormat::ChannelsLast);
  torch::Tensor w_out = torch::randn({8, 4, 5, 5});
  auto make = [] {
    SyncBatchNorm2d bn(4);
    torch::NoGradGuard g;
    bn->weight.copy_(torch::tensor({1.5f, 0.5f, -1.f, 2.f}));
    bn->bias.copy_(torch::tensor({0.1f, -0.2f, 0.3f, 0.f}));
    return bn;
  };
  SyncBatchNorm2d reference = make();  // no sync attached: plain BatchNorm2d
  torch::Tensor xr = x.clone().set_requires_grad(true);
  torch::Tensor yr = reference(xr);
  (yr * w_out).sum().backward();

  run_ranks(3, [&](Communicator& comm) {
    SyncBatchNorm2d bn = make();
    auto sync = std::make_shared<CommSync>(comm);
    EXPECT_EQ(set_batchnorm_sync(*bn, sync), 1);
    torch::Tensor xl = rows_of(x, comm.rank(), 3).clone().set_requires_grad(true);
    torch::Tensor yl = bn(xl);
    (yl * rows_of(w_out, comm.rank(), 3)).sum().backward();
    EXPECT_LT(max_abs_diff(yl, rows_of(yr, comm.rank(), 3)), 1e-5);
    EXPECT_LT(max_abs_diff(xl.grad(), rows_of(xr.grad(), comm.rank(), 3)), 1e-4);
    torch::Tensor dw = bn->weight.grad().clone(), db = bn->bias.grad().clone();
    comm.all_reduce_sum(dw);  // what the trainer's gradient reduction does
    comm.all_reduce_sum(db);
    EXPECT_LT(max_abs_diff(dw, reference->weight.grad()), 1e-3);
    EXPECT_LT(max_abs_diff(db, reference->bias.grad()), 1e-3);
    EXPECT_LT(max_abs_diff(bn->running_mean, reference->running_mean), 1e-6);
    EXPECT_LT(max_abs_diff(bn->running_var, reference->running_var), 1e-5);
    EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
    // Eval mode ignores the sync: running statistics, no communication.
    bn->eval();
    reference->eval();
    EXPECT_LT(max_abs_diff(bn(xl.detach()), reference(xl.detach())), 1e-6);
    reference->train();
  });
}

// Small real networks (convnet4, and the cpu preset's MobileNetV2, + mirror attention + GeM), in
// double precision so that "the same computation" can be checked tightly: loss and every parameter
// gradient of 2 ranks x half the batch equal those of 1 process with the whole batch.
class GlobalBatch : public ::testing::TestWithParam<std::string> {};

TEST_P(GlobalBatch, LossAndGradientsEqualOneProcess) {
  ModelConfig mc = ModelConfig::from_json(model_preset("cpu"));
  mc.backbone = backbone_choices().parse(GetParam(), "backbone");
  mc.pretrained = "";
  mc.input_size = 32;
  mc.spatial_attention = true;
  LossConfig lc = LossConfig::from_json(Json{{"ftl", {{"weight", 1.0}}}, {"batch_hard", {{"weight", 0.5}}}});
  torch::manual_seed(11);
  const int64_t batch = 10;
  torch::Tensor images = torch::rand({batch, 3, 32, 32}, torch::kFloat64);
  torch::Tensor grades = torch::tensor({0, 1, 2, 3, 4, 0, 1, 2, 3, 4}, torch::kInt64);
  std::mutex init;  // the ranks run as threads: one seeded construction at a time (global generator)
  auto make_net = [&] {
    std::lock_guard<std::mutex> lock(init);
    seed_torch(7);
    RetrievalNet net(mc, false);
    net->to(torch::kFloat64);
    net->train();
    return net;
  };
  RetrievalNet single = make_net();
  ModelOutput o = single->forward(images);
  LossResult expected = compute_loss(lc, {o.descriptor, o.branch_h, o.branch_v, o.logits, grades});
  expected.total.backward();
  std::map<std::string, torch::Tensor> expected_grads;
  for (const auto& p : single->named_parameters())
    if (p.value().grad().defined()) expected_grads[p.key()] = p.value().grad().clone();
  ASSERT_GT(expected_grads.size(), 10u);
  double largest = 0;
  for (const auto& [name, g] : expected_grads) largest = std::max(largest, g.abs().max().item<double>());

  run_ranks(2, [&](Communicator& comm) {
    RetrievalNet net = make_net();
    DataParallel dp(comm, *net);
    dp.broadcast_state(*net);
    ModelOutput out = net->forward(rows_of(images, comm.rank(), 2));
    LossInputs in = dp.gather_loss_inputs(
        {out.descriptor, out.branch_h, out.branch_v, out.logits, rows_of(grades, comm.rank(), 2)});
    EXPECT_EQ(in.descriptor.size(0), batch);
    EXPECT_TRUE(torch::equal(in.grades, grades));
    LossResult loss = compute_loss(lc, in);
    EXPECT_NEAR(loss.parts.at("total"), expected.parts.at("total"), 1e-10);
    EXPECT_NEAR(loss.parts.at("ftl"), expected.parts.at("ftl"), 1e-10);
    loss.total.backward();
    const bool stop = dp.reduce_gradients(net->parameters(), /*stop_vote=*/comm.rank() == 1);
    EXPECT_TRUE(stop);  // rank 1's vote reaches rank 0
    double worst = 0;
    std::string worst_name;
    for (const auto& p : net->named_parameters()) {
      if (!expected_grads.count(p.key())) continue;
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      // Relative to the parameter's own gradient, or to 1e-6 of the largest: some gradients are
      // zero up to rounding (a bias followed by conv + BatchNorm cancels), and rounding is not a test.
      const double scale = std::max(1e-6 * largest, expected_grads[p.key()].abs().max().item<double>());
      const double d = max_abs_diff(p.value().grad(), expected_grads[p.key()]) / scale;
      if (d > worst) worst_name = p.key();
      worst = std::max(worst, d);
    }
    EXPECT_LT(worst, 1e-8) << "largest relative gradient difference, in " << worst_name;
    EXPECT_FALSE(dp.reduce_gradients(net->parameters(), false));
    EXPECT_GT(dp.timing().batchnorm, 0.0);
  });
}

INSTANTIATE_TEST_SUITE_P(Distributed, GlobalBatch, ::testing::Values("convnet4", "mobilenet_v2"));

// ---- real processes on loopback --------------------------------------------------------------
namespace {

// The tiny recipe with the convnet4 backbone: random-init MobileNetV2 at 64 px is so ill-conditioned
// in its first steps that 1 vs 2 compute threads alone move a parameter by 10% of its update; with
// convnet4 rounding stays rounding, so a wrong gradient cannot hide in it.
std::string train_args(const std::string& out, const std::string& extra) {
  return "train --preset tiny --set model.backbone=convnet4 --data " + test::shell_quote(test::synthetic_manifest()) +
         " --out " + test::shell_quote(out) + " --set train.workers=1 --set optim.name=sgd --set optim.lr=0.05 " +
         extra;
}

StateDict model_of(const std::string& run) { return load_checkpoint(run + "/checkpoints/last.ckpt").model; }

// Largest |a - b| over the parameters (not the buffers) of two state dicts.
double max_param_diff(const StateDict& a, const StateDict& b, const std::set<std::string>& params) {
  double worst = 0;
  for (const auto& item : a) {
    if (!params.count(item.key())) continue;
    const torch::Tensor* other = b.find(item.key());
    EXPECT_NE(other, nullptr) << item.key();
    if (other) worst = std::max(worst, max_abs_diff(item.value(), *other));
  }
  return worst;
}

}  // namespace

TEST(DistributedProcesses, TwoProcessesTrainLikeOneAndResumeWithAnyWorldSize) {
  CleanLaunchEnv clean;
  test::TempDir dir;
  // Global batch 10 for 2 SGD steps: 1 process (1 thread); 1 process with 2 threads, whose
  // difference to the first is what float rounding alone does; 2 processes with 5 images each.
  auto one = test::run_cli(train_args(dir.file("one"), "--threads 1 --set train.stop_after_steps=2"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto rounding = test::run_cli(train_args(dir.file("rounding"), "--threads 2 --set train.stop_after_steps=2"));
  ASSERT_EQ(rounding.exit_code, 0) << rounding.output;
  auto two = test::run_cli(train_args(dir.file("two"), "--threads 1 --nproc 2 --set train.stop_after_steps=2"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("2 processes"), std::string::npos) << two.output;

  std::vector<Json> rows1 = test::step_rows(dir.file("one")), rows2 = test::step_rows(dir.file("two"));
  ASSERT_EQ(rows1.size(), 2u);
  ASSERT_EQ(rows2.size(), 2u);  // one log, from rank 0
  const std::vector<double> lr = test::step_losses(dir.file("rounding"));
  ASSERT_EQ(lr.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const double a = rows1[i]["loss"], b = rows2[i]["loss"];
    std::cout << "[equivalence] step " << i + 1 << " loss: 1 process " << strprintf("%.7f", a) << ", 2 processes "
              << strprintf("%.7f", b) << " (diff " << strprintf("%.2e", std::abs(a - b)) << "; 2 threads: diff "
              << strprintf("%.2e", std::abs(a - lr[i])) << ")\n";
    EXPECT_NEAR(a, b, 1e-4 * std::abs(a)) << "step " << i + 1;
    EXPECT_TRUE(rows2[i].contains("allreduce_ms"));
  }
  // Parameters after 2 steps: the 2-process update is the 1-process update, up to what rounding does.
  RunConfig cfg = resolve_run_config("tiny", "", {"model.backbone=convnet4"});
  seed_torch(cfg.train.seed);
  RetrievalNet init(cfg.model, true);
  std::set<std::string> params;
  for (const auto& p : init->named_parameters()) params.insert(p.key());
  StateDict initial = module_state_dict(*init), m1 = model_of(dir.file("one")), m2 = model_of(dir.file("two"));
  const double update = max_param_diff(m1, initial, params), diff = max_param_diff(m1, m2, params),
               noise = max_param_diff(m1, model_of(dir.file("rounding")), params);
  std::cout << "[equivalence] after 2 SGD steps: largest parameter update " << strprintf("%.3e", update)
            << ", largest 1-vs-2-process difference " << strprintf("%.3e", diff) << " (1-vs-2-thread difference "
            << strprintf("%.3e", noise) << ")\n";
  // This recipe is sensitive: another thread count alone moves parameters by ~5-10% of the update.
  EXPECT_GT(update, 1e-3);
  EXPECT_LT(diff, 0.25 * update);                       // a missing or doubled share would be ~update
  EXPECT_LT(diff, std::max(5 * noise, 1e-5 * update));  // no further than another thread count

  // Resume across world sizes: the 2-process run continues in 1 process, the 1-process run in 2.
  auto c = test::run_cli(train_args(dir.file("two"), "--threads 1 --resume --set train.stop_after_steps=4"));
  ASSERT_EQ(c.exit_code, 0) << c.output;
  auto d = test::run_cli(train_args(dir.file("one"), "--threads 1 --resume --nproc 2 --set train.stop_after_steps=4"));
  ASSERT_EQ(d.exit_code, 0) << d.output;
  std::vector<double> l2 = test::step_losses(dir.file("two")), l1 = test::step_losses(dir.file("one"));
  ASSERT_EQ(l1.size(), 4u);
  ASSERT_EQ(l2.size(), 4u);
  for (size_t i = 2; i < 4; ++i) EXPECT_NEAR(l1[i], l2[i], 1e-3 * std::abs(l1[i])) << "step " << i + 1;
  const double resumed_diff = max_param_diff(model_of(dir.file("one")), model_of(dir.file("two")), params);
  std::cout << "[equivalence] after 4 steps (resumed with the other world size): largest parameter difference "
            << strprintf("%.3e", resumed_diff) << "\n";
  EXPECT_LT(resumed_diff, update);  // rounding grows over the steps; the losses above are the check
}

namespace {

// Starts the fundus CLI with `args` and extra environment variables, output to `log`; returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& log) {
  std::vector<std::string> argv_s = {FUNDUS_CLI};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s = env;
  for (char** e = environ; *e; ++e) env_s.push_back(*e);  // ours last: the first occurrence wins
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  for (auto& e : env_s) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

// Waits for `pid` up to `seconds`; returns its exit status, or -1 on timeout (the process is then killed).
int wait_for(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

std::vector<std::string> train_argv(const std::string& out, const std::vector<std::string>& extra) {
  std::vector<std::string> a = {"train",           "--preset", "tiny",          "--data", test::synthetic_manifest(),
                                "--out",           out,        "--threads",     "1",      "--set",
                                "train.workers=1", "--set",    "optim.name=sgd"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace

TEST(DistributedProcesses, ADyingWorkerStopsTheOthersWithAClearMessage) {
  CleanLaunchEnv clean;
  test::TempDir dir;
  // Two ranks started by hand, as on two machines (no launcher to clean up): once training runs,
  // rank 1 is killed; rank 0 must fail on its own (well before the 600 s timeout), saying why.
  const std::vector<std::string> env = {"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(free_local_port()),
                                        "WORLD_SIZE=2", "FUNDUS_QUIET=1", "OMP_WAIT_POLICY=PASSIVE"};
  const auto args = train_argv(dir.file("run"), {"--dist-timeout", "600", "--epochs", "50"});
  auto with_rank = [&](int r) {
    auto e = env;
    e.push_back("RANK=" + std::to_string(r));
    return e;
  };
  pid_t rank0 = spawn_cli(args, with_rank(0), dir.file("rank0.log"));
  pid_t rank1 = spawn_cli(args, with_rank(1), dir.file("rank1.log"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (test::step_rows(dir.file("run")).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const bool started = !test::step_rows(dir.file("run")).empty();
  ::kill(rank1, SIGKILL);
  ::waitpid(rank1, nullptr, 0);
  const auto killed = std::chrono::steady_clock::now();
  const int status = wait_for(rank0, 300);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const std::string log0 = file_exists(dir.file("rank0.log")) ? read_file(dir.file("rank0.log")) : "";
  ASSERT_TRUE(started) << log0;
  ASSERT_NE(status, -1) << "rank 0 still ran 300 s after rank 1 died:\n" << log0;
  std::cout << "[failure] rank 0 stopped " << strprintf("%.1f", waited) << " s after rank 1 was killed: "
            << log0.substr(log0.rfind("error:") == std::string::npos ? 0 : log0.rfind("error:")) << "\n";
  EXPECT_NE(status, 0) << log0;
  EXPECT_NE(log0.find("rank 0/2"), std::string::npos) << log0;
  EXPECT_NE(log0.find("--resume"), std::string::npos) << log0;

  // With the launcher: a worker that dies takes the run down, and the launcher names it.
  pid_t launcher = spawn_cli(train_argv(dir.file("launched"), {"--nproc", "2", "--epochs", "50"}),
                             {"FUNDUS_QUIET=1", "OMP_WAIT_POLICY=PASSIVE"}, dir.file("launcher.log"));
  while (test::step_rows(dir.file("launched")).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // The launcher's second child is rank 1.
  auto children = test::run_command("cat /proc/" + std::to_string(launcher) + "/task/*/children");
  std::vector<std::string> pids;
  for (const std::string& p : split(trim(children.output), ' '))
    if (!trim(p).empty()) pids.push_back(trim(p));
  ASSERT_EQ(pids.size(), 2u) << children.output << read_file(dir.file("launcher.log"));
  ::kill(pid_t(parse_int(pids[1], "pid")), SIGKILL);
  const int launcher_status = wait_for(launcher, 300);
  const std::string log = read_file(dir.file("launcher.log"));
  ASSERT_NE(launcher_status, -1) << log;
  EXPECT_NE(launcher_status, 0) << log;
  EXPECT_NE(log.find("rank 1 (pid " + pids[1] + ") ended with signal"), std::string::npos) << log;
  EXPECT_NE(log.find("Restart from the last checkpoint with --resume"), std::string::npos) << log;
}

TEST(DistributedProcesses, WrongWorldConfigurationsFailFastAndSayWhy) {
  CleanLaunchEnv clean;
  test::TempDir dir;
  const auto args = train_argv(dir.file("run"), {"--epochs", "1"});
  auto rank_env = [](int rank, int world, int port) {
    return std::vector<std::string>{"MASTER_ADDR=127.0.0.1",
                                    "MASTER_PORT=" + std::to_string(port),
                                    "WORLD_SIZE=" + std::to_string(world),
                                    "RANK=" + std::to_string(rank),
                                    "FUNDUS_QUIET=1",
                                    "OMP_WAIT_POLICY=PASSIVE"};
  };
  auto timeout = [](std::vector<std::string> a, const std::string& seconds) {
    a.insert(a.end(), {"--dist-timeout", seconds});
    return a;
  };

  // Nobody serves the store: rank 1 gives up after --dist-timeout, naming the address.
  const int closed = test::closed_local_port();
  pid_t lonely = spawn_cli(timeout(args, "3"), rank_env(1, 2, closed), dir.file("lonely.log"));
  EXPECT_GT(wait_for(lonely, 120), 0);
  std::string log = read_file(dir.file("lonely.log"));
  EXPECT_NE(log.find("rank 1/2: cannot join the run's store at 127.0.0.1:" + std::to_string(closed)), std::string::npos)
      << log;

  // Rank 0 alone: it names the rank that never came.
  pid_t alone = spawn_cli(timeout(args, "3"), rank_env(0, 2, free_local_port()), dir.file("alone.log"));
  EXPECT_GT(wait_for(alone, 120), 0);
  log = read_file(dir.file("alone.log"));
  EXPECT_NE(log.find("rank 0/2: rank 1 did not join within 3 s"), std::string::npos) << log;
  EXPECT_FALSE(file_exists(dir.file("run/metrics.jsonl")));

  // Different options, or a different world size: both sides fail at the rendezvous (well within
  // the 600 s timeout) and name the first difference.
  struct Case {
    std::vector<std::string> extra1;
    int world1;
    std::string difference;
  };
  for (const Case& c : {Case{{"--set", "optim.lr=0.2"}, 2, "rank 1: 'config/optim/lr=0.2', rank 0: 'config/optim/lr="},
                        Case{{}, 3, "rank 1: 'world_size=3', rank 0: 'world_size=2'"}}) {
    const int port = free_local_port();
    auto args1 = timeout(args, "600");
    args1.insert(args1.end(), c.extra1.begin(), c.extra1.end());
    pid_t r0 = spawn_cli(timeout(args, "600"), rank_env(0, 2, port), dir.file("r0.log"));
    pid_t r1 = spawn_cli(args1, rank_env(1, c.world1, port), dir.file("r1.log"));
    const int s0 = wait_for(r0, 120), s1 = wait_for(r1, 120);
    const std::string log0 = read_file(dir.file("r0.log")), log1 = read_file(dir.file("r1.log"));
    EXPECT_GT(s0, 0) << log0;
    EXPECT_GT(s1, 0) << log1;
    EXPECT_NE(log0.find("rank 1 was started with other options than rank 0"), std::string::npos) << log0;
    EXPECT_NE(log0.find(c.difference), std::string::npos) << log0;
    // Rank 1 names the difference too, unless rank 0 has already stopped and closed the store.
    EXPECT_NE(log1.find("error: rank 1/"), std::string::npos) << log1;
    std::cout << "[world] " << log0.substr(log0.rfind("error:") == std::string::npos ? 0 : log0.rfind("error:"));
  }

  // Launcher options checked before anything starts.
  auto r = test::run_cli(train_args(dir.file("x"), "--nnodes 2 --node-rank 1"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--nnodes 2: give --master-addr"), std::string::npos) << r.output;
}
