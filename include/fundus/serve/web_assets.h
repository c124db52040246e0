// The web page's files (src/serve/web/*), embedded into the binary at build time by
// src/serve/web/embed_web.cmake, so the server needs no files on disk and no network.
#pragma once

#include <string_view>
#include <vector>

namespace fundus {

struct WebAsset {
  std::string_view path;          // URL path, e.g. "/app.js" ("/" serves "/index.html")
  std::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
  std::string_view body;
};

/// Every embedded asset; static storage, never changes.
const std::vector<WebAsset>& web_assets();
/// The asset for a URL path ("/" = index.html), or nullptr.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace fundus
