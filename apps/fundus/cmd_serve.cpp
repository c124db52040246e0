// `fundus serve`: the HTTP API and the web page (fundus/serve/server.h, docs/api.md).
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "commands.h"
#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/model/runtime.h"
#include "fundus/retrieval/search_engine.h"
#include "fundus/serve/server.h"

namespace fundus::cli {

void add_serve_command(CLI::App& app) {
  struct Args {
    EngineOptions engine;
    ServerOptions server;
    double max_upload_mb = 20;
    int replicas = 0;  // 0 = one per core, up to 4
    bool no_access_log = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("serve", "HTTP API and web page for similar-case search (docs/api.md)");
  cmd->add_option("--store", a->engine.store_path, "Case store database (SQLite)")->required();
  cmd->add_option("--model", a->engine.checkpoint_path, "Model checkpoint (.ckpt)")->required();
  cmd->add_option("--host", a->server.host, "Address to bind (keep 127.0.0.1 unless behind a proxy)")
      ->capture_default_str();
  cmd->add_option("--port", a->server.port, "Port (0 = any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--token", a->server.token,
                  "Token required for writes (POST/DELETE /api/cases); default: $FUNDUS_TOKEN if set");
  cmd->add_option("--workers", a->server.workers, "HTTP worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option(
         "--replicas", a->replicas,
         "Model copies for concurrent queries (0 = one per core, up to 4, each on one thread unless --threads)")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_option("--max-upload-mb", a->max_upload_mb, "Largest request body in MB (413 above)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1024.0));
  cmd->add_option("--max-pixels", a->server.max_pixels, "Largest decoded image in pixels (413 above)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--index-spec", a->engine.index_spec, "Vector index: exact, hnsw:M=32,efc=200,ef=64, ivfpq:...")
      ->capture_default_str();
  cmd->add_option("--index", a->engine.index_path, "Index file (default: next to the store)");
  cmd->add_option("--image-dir", a->engine.image_dir, "Where added images are kept (default: <store dir>/images)");
  cmd->add_option("--query-cache", a->server.query_cache_size, "Queries whose images are kept for the page")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--header-timeout", a->server.header_timeout_s,
                  "Seconds a client has to send a request's headers (slower ones get 408)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--max-client-connections", a->server.max_connections_per_client,
                  "Open connections allowed from one address (more get 503; raise it behind a proxy)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--access-log", a->server.access_log, "Append the JSON access log to this file (default: stderr)");
  cmd->add_flag("--no-access-log", a->no_access_log, "Write no access log");
  add_threads_option(*cmd, a->engine.threads);
  add_device_option(*cmd, a->engine.device);
  cmd->callback([a] {
    EngineOptions eo = a->engine;
    ServerOptions so = a->server;
    eo.create_store = false;  // serving a mistyped path must not create an empty store
    eo.max_image_pixels = so.max_pixels;
    so.max_upload_bytes = size_t(a->max_upload_mb * 1024 * 1024);
    so.access_log_enabled = !a->no_access_log;
    so.max_connections = std::max(so.max_connections, so.max_connections_per_client);
    if (so.token.empty())
      if (const char* env = std::getenv("FUNDUS_TOKEN")) so.token = env;
    if (so.host != "127.0.0.1" && so.host != "localhost" && so.host != "::1" && so.token.empty())
      std::cerr << "warning: listening on " << so.host << " without --token: anyone who can reach it can add and "
                << "delete cases\n";

    const int cores = available_cores();
    eo.inference_replicas = a->replicas > 0 ? a->replicas : std::clamp(cores, 1, 4);

    SearchEngine engine(eo);  // start-up embedding of new cases uses --threads (default: all cores)
    // Serving: with the default threads, one intra-op thread per replica; concurrent queries then run
    // side by side instead of contending (23 vs 18 queries/s for 2 clients, docs/bench-serve.md).
    if (a->engine.threads == 0) set_compute_threads(std::max(1, cores / eo.inference_replicas));
    auto backend = engine_backend(engine);
    Server server(*backend, so);
    server.start();
    std::cout << "fundus serve: " << engine.size() << " cases indexed, " << eo.inference_replicas
              << " model replica(s), listening on http://" << (so.host == "0.0.0.0" ? "127.0.0.1" : so.host) << ":"
              << server.port() << "/\n"
              << "Research tool, not a diagnostic device. Ctrl-C stops.\n"
              << std::flush;
    int signal = serve_until_signal(server);
    std::cout << "fundus serve: stopped (signal " << signal << ")\n";
  });
}

}  // namespace fundus::cli
