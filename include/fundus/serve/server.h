// The HTTP service (`fundus serve`): the JSON API of docs/api.md plus the embedded web page at "/".
//
//   auto backend = engine_backend(engine);
//   Server server(*backend, {.port = 8080});
//   server.start();                 // binds (throws if it cannot) and serves on background threads
//   serve_until_signal(server);     // returns after SIGINT/SIGTERM once in-flight requests finished
//
// Requests run on a fixed pool of `workers` threads fed by a bounded queue of accepted connections
// (when it is full the accept loop waits: back-pressure instead of unbounded memory). Inference
// concurrency is the backend's business (SearchEngine's inference_replicas).
// Bad requests get a 4xx JSON error ({"error": {"code", "message"}}) and never stop the server;
// handler exceptions become 500 with the message. One JSON line per request goes to the access log.
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
  int port = 8080;                           // 0 = any free port (see Server::port())
  std::string token;                         // "" = writes need no token
  int workers = 8;                           // HTTP worker threads (a keep-alive connection holds one)
  size_t max_upload_bytes = 20u << 20;       // larger request bodies -> 413
  int64_t max_pixels = 40000000;             // larger images -> 413, from the header before decoding
  int max_k = 100;
  size_t query_cache_size = 64;              // artefacts (preprocessed image, attention) of the last N queries
  std::string access_log;                    // file to append to; "" = stderr
  bool access_log_enabled = true;
  int keep_alive_timeout_s = 2;              // idle keep-alive connections free their worker after this
  int thumbnail_size = 256;                  // longer side of /api/cases/{id}/image?size=thumb
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
