// The HTTP service (`fundus serve`): the JSON API of docs/api.md plus the embedded web page at "/".
//
//   auto backend = engine_backend(engine);
//   ServerOptions so;
//   so.port = 8080;
//   Server server(*backend, so);
//   server.start();                 // binds (throws if it cannot) and serves on background threads
//   serve_until_signal(server);     // returns after SIGINT/SIGTERM once in-flight requests finished
//
// Connections: one gate thread holds every connection that is between requests and hands it to one
// of `workers` threads only once a complete request header has arrived (src/serve/http_gate.h), so
// slow or idle clients hold file descriptors, never workers, and the accept loop never waits. A
// header must arrive within header_timeout_s (else 408), an idle keep-alive connection is closed
// after keep_alive_timeout_s, connections are capped per client address and in all (else 503).
// Inference concurrency is the backend's business (SearchEngine's inference_replicas).
// Bad requests get a 4xx JSON error ({"error": {"code", "message"}}) and never stop the server.
// Server-side failures are 500 with a stable code and a message that names no server file
// ("internal": details only in the server's log; "corrupt_case"/"corrupt_store": a damaged store row,
// naming the case id). One JSON line per request goes to the access log.
// Thread safety: start/stop/wait may be called from any thread; stop is idempotent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fundus/core/json.h"
#include "fundus/serve/backend.h"

namespace fundus {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                      // 0 = any free port (see Server::port())
  std::string token;                    // "" = writes need no token
  int workers = 8;                      // HTTP worker threads (a keep-alive connection holds one)
  size_t max_upload_bytes = 20u << 20;  // larger request bodies -> 413
  int64_t max_pixels = 40000000;        // larger images -> 413, from the header before decoding
  int max_k = 100;
  size_t query_cache_size = 64;  // artefacts (preprocessed image, attention) of the last N queries
  std::string access_log;        // file to append to; "" = stderr
  bool access_log_enabled = true;
  int keep_alive_timeout_s = 2;          // idle keep-alive connections are closed after this
  int header_timeout_s = 10;             // a request's headers must arrive within this (else 408)
  int max_connections_per_client = 128;  // open connections from one address (more: 503)
  int max_connections = 512;             // open connections in all (more: 503; also kept under the fd limit)
  int thumbnail_size = 256;              // longer side of /api/cases/{id}/image?size=thumb
};

class Server {
 public:
  /// `backend` must outlive the server. Throws for invalid options or an unwritable access log.
  Server(SearchBackend& backend, const ServerOptions& options);
  ~Server();  // stops and joins
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds host:port (throws naming them when that fails) and serves on background threads.
  void start();
  /// The bound port (useful with port 0); 0 before start().
  int port() const;
  /// Stops accepting; returns at once. In-flight requests complete (wait() returns after them).
  void stop();
  /// Blocks until the server has stopped and every worker has finished.
  void wait();

  /// Request counters: total, by status class and by route.
  Json counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Blocks until SIGINT or SIGTERM arrives (handlers are installed for the duration of the call),
/// then stops the server and waits for in-flight requests. Returns the signal number.
int serve_until_signal(Server& server);

}  // namespace fundus
