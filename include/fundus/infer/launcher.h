// Where a process sits in a distributed run, and the local launcher behind `--nproc N`.
//
// Three ways to start a run of W = nnodes x nproc workers (docs/scaling.md):
//   fundus train --nproc 2 ...                                   one machine, two worker processes
//   fundus train --nnodes 2 --node-rank K --master-addr A --master-port P --nproc 1 ...   on each machine
//   torchrun --nproc-per-node 2 --no-python fundus train ...     (or any launcher that sets the variables)
// A worker learns its place from the variables torchrun sets: MASTER_ADDR, MASTER_PORT, WORLD_SIZE,
// RANK, LOCAL_RANK, LOCAL_WORLD_SIZE (and TORCHELASTIC_USE_AGENT_STORE / TORCHELASTIC_RESTART_COUNT
// when torchrun's agent already serves the store). `--nproc` starts the workers as copies of the very
// same command line (fork + exec of /proc/self/exe) with these variables and FUNDUS_LAUNCHED=1 set.
//
// Failure: when one worker exits non-zero or dies by a signal, the launcher stops the others (SIGTERM,
// SIGKILL after a grace period) and exits with that worker's status; a launcher that dies takes its
// workers with it (PR_SET_PDEATHSIG). Ctrl-C reaches the launcher, which passes one SIGINT to each
// worker (the trainer then checkpoints and stops; a second Ctrl-C stops at once).
// Torch-free. Linux only (fork, prctl, /proc/self).
#pragma once

#include <string>

namespace fundus {

/// This process's place in a run. world_size 1 = not distributed.
struct DistributedOptions {
  int world_size = 1;
  int rank = 0;                           // 0 .. world_size-1; rank 0 writes checkpoints, logs and progress
  int local_rank = 0;                     // rank among the workers of this machine
  int local_world_size = 1;               // workers on this machine (compute threads are divided among them)
  std::string master_addr = "127.0.0.1";  // rank 0's machine: it serves the c10d TCPStore
  int master_port = 29500;
  int timeout_seconds = 1800;           // rendezvous and every collective: a silent peer fails after this
  bool agent_store = false;             // torchrun's agent already serves the store at master_addr:master_port
  std::string store_prefix = "fundus";  // key namespace in the store (one per restart attempt)

  bool distributed() const { return world_size > 1; }
  bool is_main() const { return rank == 0; }
  /// "rank 1/4" (for messages).
  std::string describe() const;
};

/// The command-line options of a distributed command (train, embed).
struct LaunchOptions {
  int nproc = 1;            // workers to start on this machine
  int nnodes = 1;           // machines
  int node_rank = 0;        // this machine, 0 .. nnodes-1 (node 0 hosts rank 0 and the store)
  std::string master_addr;  // "" = 127.0.0.1 (one machine); required with nnodes > 1
  int master_port = 0;      // 0 = a free port (one machine) or 29500 (several)
  int timeout_seconds = 1800;
};

enum class LaunchRole {
  single,    // an ordinary, non-distributed process
  launcher,  // start `nproc` local workers and wait for them (run_local_workers)
  worker     // one rank of a distributed run (its place is in LaunchPlan::world)
};

struct LaunchPlan {
  LaunchRole role = LaunchRole::single;
  DistributedOptions world;  // worker: this process; launcher: rank/local_rank of its first worker
  int nproc = 1;             // launcher: workers to start
};

/// Decides the role from the options and the environment: FUNDUS_LAUNCHED=1 or torchrun's
/// variables (WORLD_SIZE and RANK) make a worker; nproc x nnodes > 1 makes a launcher. Throws
/// fundus::Error naming the option or variable that is missing, malformed or contradictory.
LaunchPlan plan_launch(const LaunchOptions& options);

/// Starts plan.nproc copies of this process's command line as workers with the torchrun variables
/// set, forwards SIGINT/SIGTERM, waits for all. Returns 0 when every worker succeeded, else the exit
/// status of the first that failed (128 + signal for a signal) after stopping the others; prints
/// one line on stderr naming that rank. `grace_seconds`: between SIGTERM and SIGKILL.
int run_local_workers(const LaunchPlan& plan, double grace_seconds = 10.0);

/// A TCP port on this machine that was free a moment ago (bound to port 0, then closed).
int free_local_port();

/// This machine's address on the route to `peer` (the local end of a UDP "connection"), so that a
/// Gloo device bound to it is reachable from `peer`; "127.0.0.1" for a loopback peer. Throws when
/// `peer` does not resolve.
std::string local_address_towards(const std::string& peer);

/// While alive on a rank other than 0: no progress bars and only errors logged (rank 0 speaks for
/// the run; the others would repeat it). Restores both on destruction. Does nothing on rank 0.
class QuietUnlessMain {
 public:
  explicit QuietUnlessMain(bool main_rank);
  ~QuietUnlessMain();
  QuietUnlessMain(const QuietUnlessMain&) = delete;
  QuietUnlessMain& operator=(const QuietUnlessMain&) = delete;

 private:
  bool active_, quiet_before_ = false;
  int level_before_ = 0;
};

}  // namespace fundus
