#include "fundus/model/weights_hub.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/model/download.h"

namespace fundus {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// os.path.expanduser for "~" and "~/...".
std::string expand_user(const std::string& path) {
  if (path.empty() || path[0] != '~' || (path.size() > 1 && path[1] != '/')) return path;
  std::string home = env("HOME");
  if (home.empty())
    if (const passwd* pw = ::getpwuid(::getuid())) home = pw->pw_dir ? pw->pw_dir : "";
  return home + path.substr(1);
}

bool regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t size_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? int64_t(st.st_size) : 0;
}

std::string known_names() {
  std::vector<std::string> names;  // "mobilenet_v2, mobilenet_v2:IMAGENET1K_V1, ..."
  for (const auto& w : known_weights()) {
    if (names.empty() || !starts_with(names.back(), w.backbone + ":")) names.push_back(w.backbone);
    names.push_back(w.name());
  }
  return join(names, ", ");
}

std::string fetch_hint(const KnownWeights& w) {
  return "run `fundus model fetch " + (w.is_default ? w.backbone : w.name()) + "`, or copy " + w.file + " into " +
         hub_checkpoint_dir();
}

}  // namespace

std::string KnownWeights::sha256_prefix() const {
  // torch.hub's HASH_REGEX: the hex digits between the first '-' and the following '.'.
  static const std::regex hash(R"(-([a-f0-9]*)\.)");
  std::smatch m;
  return std::regex_search(file, m, hash) ? m[1].str() : "";
}

const std::vector<KnownWeights>& known_weights() {
  // From torchvision 0.14's models/{mobilenetv2,resnet,densenet}.py (file names, DEFAULT, acc@1,
  // num_params). The files are what torchvision.models.X(weights=...) downloads.
  static const std::vector<KnownWeights> table{
      {"mobilenet_v2", "IMAGENET1K_V1", "mobilenet_v2-b0353104.pth", false, 71.878, 3504872},
      {"mobilenet_v2", "IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", true, 72.154, 3504872},
      {"resnet18", "IMAGENET1K_V1", "resnet18-f37072fd.pth", true, 69.758, 11689512},
      {"resnet34", "IMAGENET1K_V1", "resnet34-b627a593.pth", true, 73.314, 21797672},
      {"resnet50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", false, 76.130, 25557032},
      {"resnet50", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth", true, 80.858, 25557032},
      {"densenet121", "IMAGENET1K_V1", "densenet121-a639ec97.pth", true, 74.434, 7978856},
  };
  return table;
}

const KnownWeights* find_known_weights(const std::string& name) {
  const size_t colon = name.find(':');
  const std::string backbone = name.substr(0, colon);
  const std::string version = colon == std::string::npos ? "DEFAULT" : name.substr(colon + 1);
  for (const auto& w : known_weights()) {
    if (name == w.file) return &w;
    if (backbone == w.backbone && (version == w.version || (version == "DEFAULT" && w.is_default))) return &w;
  }
  return nullptr;
}

const KnownWeights& known_weights_named(const std::string& name) {
  const KnownWeights* w = find_known_weights(name);
  FUNDUS_CHECK(w, "unknown weights '" << name << "' (known: " << known_names() << ")");
  return *w;
}

std::string hub_checkpoint_dir() {
  std::string torch_home = env("TORCH_HOME");
  if (torch_home.empty()) {
    std::string cache = env("XDG_CACHE_HOME");
    torch_home = join_path(cache.empty() ? "~/.cache" : cache, "torch");
  }
  return join_path(join_path(expand_user(torch_home), "hub"), "checkpoints");
}

std::string weights_base_url() {
  std::string url = env("FUNDUS_WEIGHTS_URL");
  if (url.empty()) url = "https://download.pytorch.org/models";
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

std::string weights_url(const KnownWeights& w, const std::string& base_url) {
  std::string base = base_url.empty() ? weights_base_url() : base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + "/" + w.file;
}

std::string cached_weights_path(const KnownWeights& w, const std::string& dir) {
  std::string path = join_path(dir.empty() ? hub_checkpoint_dir() : dir, w.file);
  return regular_file(path) ? path : "";
}

const KnownWeights* find_cached_weights(const std::string& backbone, const std::string& dir) {
  const KnownWeights* other = nullptr;
  for (const auto& w : known_weights()) {
    if (w.backbone != backbone || cached_weights_path(w, dir).empty()) continue;
    if (w.is_default) return &w;
    if (!other) other = &w;
  }
  return other;
}

std::string resolve_pretrained(const std::string& spec, const std::string& backbone) {
  if (spec.empty() || regular_file(spec)) return spec;
  if (spec == "imagenet") {
    if (const KnownWeights* w = find_cached_weights(backbone)) return cached_weights_path(*w);
    const KnownWeights* want = find_known_weights(backbone);
    FUNDUS_CHECK(want, "pretrained 'imagenet': no ImageNet weights are known for backbone '" << backbone << "'");
    FUNDUS_THROW("pretrained 'imagenet': no " << backbone << " ImageNet weights in " << hub_checkpoint_dir() << "; "
                                              << fetch_hint(*want));
  }
  if (const KnownWeights* w = find_known_weights(spec)) {
    FUNDUS_CHECK(w->backbone == backbone, "pretrained '" << spec << "': these are " << w->backbone
                                                         << " weights, the model's backbone is " << backbone);
    std::string path = cached_weights_path(*w);
    FUNDUS_CHECK(!path.empty(), "pretrained '" << spec << "': " << w->file << " is not in " << hub_checkpoint_dir()
                                               << "; " << fetch_hint(*w));
    return path;
  }
  FUNDUS_CHECK(spec.find('/') != std::string::npos || spec.find('.') != std::string::npos,
               "pretrained '" << spec << "': neither a file nor known weights (imagenet, " << known_names() << ")");
  return spec;
}

FetchResult fetch_weights(const KnownWeights& w, const FetchOptions& options) {
  const std::string dir = options.dir.empty() ? hub_checkpoint_dir() : options.dir;
  const std::string dest = join_path(dir, w.file);
  FetchResult result;
  result.path = dest;
  const bool cached = regular_file(dest);
  if (!options.force && cached && starts_with(sha256_file(dest), w.sha256_prefix())) {
    result.bytes = size_of(dest);
    return result;  // a damaged cached file is replaced below, atomically
  }
  DownloadOptions d;
  d.sha256_prefix = w.sha256_prefix();
  d.progress = options.progress;
  d.label = w.file;
  const std::string url = weights_url(w, options.base_url);
  try {
    DownloadResult r = download_file(url, dest, d);
    result.downloaded = true;
    result.bytes = r.bytes;
    result.resumed_from = r.resumed_from;
  } catch (const Error& e) {
    const std::string official = weights_url(w, "https://download.pytorch.org/models");
    FUNDUS_THROW(e.message() << (cached && !options.force ? " (the cached " + w.file + " fails its SHA-256 check)" : "")
                             << ". To install it by hand, copy " << w.file
                             << (url == official ? "" : " (from " + official + ")") << " into " << dir);
  }
  return result;
}

Json weights_status(const std::string& dir_in, const std::string& base_url) {
  const std::string dir = dir_in.empty() ? hub_checkpoint_dir() : dir_in;
  Json out = Json::array();
  for (const auto& w : known_weights()) {
    std::string path = join_path(dir, w.file);
    out.push_back({{"name", w.name()},
                   {"backbone", w.backbone},
                   {"version", w.version},
                   {"default", w.is_default},
                   {"file", w.file},
                   {"url", weights_url(w, base_url)},
                   {"imagenet_top1", w.imagenet_top1},
                   {"approx_mb", double(w.num_params) * 4.0 / 1e6},
                   {"cached", regular_file(path)},
                   {"path", path},
                   {"partial_bytes", size_of(partial_download_path(path))}});
  }
  return out;
}

std::string format_weights_status(const Json& status, const std::string& dir) {
  std::string out = strprintf("%-28s %-26s %4s %7s  %s\n", "name", "file", "MB", "top-1", "state");
  for (const auto& s : status) {
    std::string state = s.at("cached").get<bool>() ? "cached" : "-";
    if (!s.at("cached").get<bool>() && s.at("partial_bytes").get<int64_t>() > 0)
      state =
          strprintf("partial (%.1f MiB, resumable)", double(s.at("partial_bytes").get<int64_t>()) / (1024.0 * 1024.0));
    std::string name = s.at("name").get<std::string>() + (s.at("default").get<bool>() ? " *" : "");
    out += strprintf("%-28s %-26s %4.0f %6.2f%%  %s\n", name.c_str(), s.at("file").get<std::string>().c_str(),
                     s.at("approx_mb").get<double>(), s.at("imagenet_top1").get<double>(), state.c_str());
  }
  out += "* = the backbone's default (`fundus model fetch BACKBONE`); cache: " + dir + "\n";
  return out;
}

}  // namespace fundus
