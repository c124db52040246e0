// An httplib::Server whose worker threads only ever see connections with a complete request header
// (private to the serve component).
//
// cpp-httplib gives each accepted connection to a worker, which then blocks reading the header: 47
// clients sending a partial header every few seconds held every worker until their read timeouts,
// and /api/health waited behind them. Here one gate thread owns every connection that is between
// requests: it polls them all, reads header bytes as they come (without blocking), and hands a
// connection to the workers only once its header is complete. A header must be complete within
// header_timeout (else 408 and close), an idle keep-alive connection is closed after
// keep_alive_timeout, a header larger than max_header_bytes gets 431. Connections are capped per
// client address and in all (else 503 and close at accept), so a slow or greedy client holds file
// descriptors, never workers, and the accept loop never waits for a worker.
//
// A worker serves requests while complete headers are buffered (pipelining), then gives the
// connection back to the gate. Request bodies are read by the worker with the read timeout per read.
//
// Lifecycle: the gate and the workers start when httplib's listen loop creates its task queue and
// stop when that loop ends (Server::stop()): connections waiting for a header are closed, requests
// whose header had arrived are answered, then the threads are joined.
// Thread safety: the counters may be read from any thread.
#pragma once

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace fundus {

struct GateLimits {
  int workers = 8;
  int header_timeout_ms = 10000;
  int keep_alive_timeout_ms = 2000;
  int read_timeout_ms = 5000;   // each read of a request body
  int write_timeout_ms = 5000;  // each write of a response
  int max_connections_per_client = 128;
  int max_connections = 512;  // lowered to fit the process's file descriptor limit
  size_t max_header_bytes = 64 * 1024;
  size_t keep_alive_max_requests = 100;
};

class GatedHttpServer : public httplib::Server {
 public:
  explicit GatedHttpServer(const GateLimits& limits);
  ~GatedHttpServer() override;

  /// After binding: cpp-httplib listens with a backlog of 5, which drops the SYNs of a browser's
  /// parallel connections (each then waits a second for the retry). Linux takes a new backlog from a
  /// second listen() on the bound socket.
  void widen_backlog(int backlog = SOMAXCONN);

  int64_t refused_connections() const { return refused_; }  // over a connection cap (503)
  int64_t header_timeouts() const { return timeouts_; }     // header not complete in time (408)

  class Gate;  // the poll thread and the worker pool of one listen loop

 private:
  // Called by httplib's accept loop (through an inline task queue) with each accepted socket.
  bool process_and_close_socket(socket_t sock) override;
  // Answers one request whose header is buffered in `stream`; false: the connection must close.
  bool serve_one(httplib::Stream& stream, size_t& served, bool stopping);

  friend class Gate;
  GateLimits limits_;
  std::atomic<Gate*> gate_{nullptr};
  std::atomic<int64_t> refused_{0}, timeouts_{0};
};

}  // namespace fundus
