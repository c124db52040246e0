#include "fundus/infer/launcher.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>
#include <vector>

#include "fundus/core/error.h"
#include "fundus/core/log.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"

namespace fundus {

std::string DistributedOptions::describe() const {
  return "rank " + std::to_string(rank) + "/" + std::to_string(world_size);
}

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  int64_t x = 0;
  FUNDUS_CHECK(try_parse_int(v, x) && x >= 0 && x <= 1 << 30,
               "environment variable " << name << "='" << v << "' is not a non-negative integer");
  return int(x);
}

std::string required_env(const char* name, const char* why) {
  const char* v = env(name);
  FUNDUS_CHECK(v, "environment variable " << name << " is not set (" << why << ")");
  return v;
}

}  // namespace

LaunchPlan plan_launch(const LaunchOptions& o) {
  FUNDUS_CHECK(o.nproc >= 1 && o.nproc <= 256, "--nproc: " << o.nproc << " outside 1..256");
  FUNDUS_CHECK(o.nnodes >= 1 && o.nnodes <= 4096, "--nnodes: " << o.nnodes << " outside 1..4096");
  FUNDUS_CHECK(o.node_rank >= 0 && o.node_rank < o.nnodes,
               "--node-rank: " << o.node_rank << " outside 0.." << o.nnodes - 1 << " (--nnodes " << o.nnodes << ")");
  FUNDUS_CHECK(o.master_port >= 0 && o.master_port <= 65535, "--master-port: " << o.master_port << " outside 0..65535");
  FUNDUS_CHECK(o.timeout_seconds >= 1, "--dist-timeout: must be >= 1 second, got " << o.timeout_seconds);
  LaunchPlan plan;
  plan.world.timeout_seconds = o.timeout_seconds;
  const bool launched = env("FUNDUS_LAUNCHED") != nullptr;
  const bool torchrun = env("WORLD_SIZE") && env("RANK");
  if (launched || torchrun) {
    // A worker: everything about the topology comes from the environment.
    FUNDUS_CHECK(launched || (o.nproc == 1 && o.nnodes == 1),
                 "WORLD_SIZE and RANK are set (started by torchrun or a scheduler): leave out --nproc/--nnodes");
    DistributedOptions& w = plan.world;
    w.world_size = env_int("WORLD_SIZE", 0);
    w.rank = env_int("RANK", -1);
    FUNDUS_CHECK(w.world_size >= 1, "WORLD_SIZE must be >= 1");
    FUNDUS_CHECK(w.rank >= 0 && w.rank < w.world_size, "RANK=" << w.rank << " outside 0.." << w.world_size - 1);
    w.local_rank = env_int("LOCAL_RANK", 0);
    w.local_world_size = std::max(1, env_int("LOCAL_WORLD_SIZE", 1));
    if (w.world_size > 1) {
      w.master_addr = required_env("MASTER_ADDR", "the address of rank 0's machine");
      w.master_port = env_int("MASTER_PORT", -1);
      FUNDUS_CHECK(w.master_port > 0 && w.master_port <= 65535,
                   "environment variable MASTER_PORT is not set or not a port number");
    }
    if (const char* agent = env("TORCHELASTIC_USE_AGENT_STORE")) w.agent_store = std::string(agent) == "True";
    w.store_prefix = "fundus/" + std::to_string(env_int("TORCHELASTIC_RESTART_COUNT", 0));
    plan.role = w.world_size > 1 ? LaunchRole::worker : LaunchRole::single;
    return plan;
  }
  const int world = o.nproc * o.nnodes;
  if (world == 1) return plan;
  FUNDUS_CHECK(o.nnodes == 1 || !o.master_addr.empty(),
               "--nnodes " << o.nnodes << ": give --master-addr (the address of node 0, reachable from every node)");
  plan.role = LaunchRole::launcher;
  plan.nproc = o.nproc;
  DistributedOptions& w = plan.world;
  w.world_size = world;
  w.rank = o.node_rank * o.nproc;
  w.local_rank = 0;
  w.local_world_size = o.nproc;
  w.master_addr = o.master_addr.empty() ? "127.0.0.1" : o.master_addr;
  w.master_port = o.master_port > 0 ? o.master_port : (o.nnodes == 1 ? free_local_port() : 29500);
  return plan;
}

// ---- the launcher --------------------------------------------------------------------------------
namespace {

std::atomic<int> g_forward_signal{0};
extern "C" void on_launcher_signal(int sig) { g_forward_signal = sig; }

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  FUNDUS_CHECK(!all.empty(), "/proc/self/cmdline: cannot read this process's command line (Linux only)");
  std::vector<std::string> args;
  size_t start = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == '\0') {
      args.push_back(all.substr(start, i - start));
      start = i + 1;
    }
  return args;
}

std::string status_text(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int run_local_workers(const LaunchPlan& plan, double grace_seconds) {
  FUNDUS_CHECK(plan.role == LaunchRole::launcher, "run_local_workers: not a launcher plan");
  const std::vector<std::string> args = own_command_line();
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::cout << std::flush;
  std::cerr << std::flush;

  // Ctrl-C and SIGTERM come to the launcher (the workers have their own process group, so the
  // terminal does not signal them directly) and are passed on once to each worker.
  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  g_forward_signal = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  const pid_t launcher = ::getpid();
  struct Worker {
    pid_t pid = -1;
    int rank = 0;
    bool running = false;
  };
  std::vector<Worker> workers(size_t(plan.nproc));
  for (int i = 0; i < plan.nproc; ++i) {
    const int rank = plan.world.rank + i;
    pid_t pid = ::fork();
    FUNDUS_CHECK(pid >= 0, "--nproc: cannot start worker " << rank << ": " << std::strerror(errno));
    if (pid == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // the launcher died: so do we
      if (::getppid() != launcher) ::_exit(1);
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      ::setenv("FUNDUS_LAUNCHED", "1", 1);
      ::setenv("WORLD_SIZE", std::to_string(plan.world.world_size).c_str(), 1);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(i).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(plan.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", plan.world.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(plan.world.master_port).c_str(), 1);
      ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "fundus: rank %d: cannot execute /proc/self/exe: %s\n", rank, std::strerror(errno));
      ::_exit(127);
    }
    workers[size_t(i)] = {pid, rank, true};
  }

  int result = 0, running = plan.nproc;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  auto signal_all = [&](int sig) {
    for (const Worker& w : workers)
      if (w.running) ::kill(w.pid, sig);
  };
  while (running > 0) {
    if (int sig = g_forward_signal.exchange(0)) signal_all(sig);
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (Worker& w : workers) {
        if (w.pid != pid || !w.running) continue;
        w.running = false;
        --running;
        const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (failed && !stopping) {
          result = exit_code_of(status);
          std::cerr << "fundus: rank " << w.rank << " (pid " << pid << ") ended with " << status_text(status);
          if (running > 0) std::cerr << "; stopping the other " << running << " worker(s) on this machine";
          std::cerr << "\n" << std::flush;
          stopping = true;
          signal_all(SIGTERM);
          stop_deadline =
              std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                     std::chrono::duration<double>(grace_seconds));
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;  // no children left
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      signal_all(SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

int free_local_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  FUNDUS_CHECK(fd >= 0, "cannot open a socket: " << std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  FUNDUS_CHECK(ok, "cannot find a free TCP port: " << std::strerror(errno));
  return ntohs(a.sin_port);
}

std::string local_address_towards(const std::string& peer) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  const int rc = ::getaddrinfo(peer.c_str(), "9", &hints, &res);
  FUNDUS_CHECK(rc == 0 && res, "master address '" << peer << "' does not resolve: " << gai_strerror(rc));
  std::string out;
  const auto* target = reinterpret_cast<const sockaddr_in*>(res->ai_addr);
  if ((ntohl(target->sin_addr.s_addr) >> 24) == 127) {
    out = "127.0.0.1";
  } else {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in local{};
    socklen_t len = sizeof local;
    // connect() on UDP sends nothing: it only picks the route and so the local address.
    if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &local.sin_addr, text, sizeof text);
      out = text;
    }
    if (fd >= 0) ::close(fd);
  }
  ::freeaddrinfo(res);
  FUNDUS_CHECK(!out.empty(), "no route from this machine to the master address '" << peer << "'");
  return out;
}

QuietUnlessMain::QuietUnlessMain(bool main_rank) : active_(!main_rank) {
  if (!active_) return;
  quiet_before_ = progress_quiet();
  level_before_ = int(log_level());
  set_progress_quiet(true);
  set_log_level(LogLevel::error);
}

QuietUnlessMain::~QuietUnlessMain() {
  if (!active_) return;
  set_progress_quiet(quiet_before_);
  set_log_level(LogLevel(level_before_));
}

}  // namespace fundus
