// torchvision's ImageNet weights for our backbones, the way PyTorch users get them: the same files,
// from the same URLs, in the same cache folder as torch.hub (so weights a user already downloaded
// with torchvision are found without a download, and ours are found by torchvision).
//
// Names (used by `fundus model fetch NAME`, `--pretrained NAME` and the run config's
// model.pretrained):
//   "mobilenet_v2"                 the backbone's default weights (torchvision's DEFAULT)
//   "mobilenet_v2:IMAGENET1K_V1"   one version ("mobilenet_v2:DEFAULT" = the default)
//   "mobilenet_v2-b0353104.pth"    torchvision's file name
//   "imagenet"                     (resolve_pretrained only) the model's backbone, any cached version,
//                                  the default first
// Cache folder: $TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to $XDG_CACHE_HOME/torch, and
// XDG_CACHE_HOME to ~/.cache (torch.hub's rule). Base URL: $FUNDUS_WEIGHTS_URL, else
// https://download.pytorch.org/models. Each file name carries the first hex digits of the file's
// SHA-256 ("resnet18-f37072fd.pth"); fetch_weights verifies them (torch.hub's check_hash).
// Thread safety: all functions are reentrant (they read the environment).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fundus/core/json.h"

namespace fundus {

struct KnownWeights {
  std::string backbone;      // "mobilenet_v2"
  std::string version;       // "IMAGENET1K_V1"
  std::string file;          // "mobilenet_v2-b0353104.pth" (torchvision's name, also in the cache)
  bool is_default = false;   // torchvision's DEFAULT for this backbone
  double imagenet_top1 = 0;  // torchvision's reported ImageNet-1k accuracy (%)
  int64_t num_params = 0;    // of the full torchvision model (the file is about 4 bytes each)

  std::string name() const { return backbone + ":" + version; }  // "mobilenet_v2:IMAGENET1K_V1"
  std::string sha256_prefix() const;                             // "b0353104"
};

/// Every known file: both versions where torchvision has two (mobilenet_v2, resnet50).
const std::vector<KnownWeights>& known_weights();

/// The entry a name (see above; not "imagenet") refers to, or nullptr.
const KnownWeights* find_known_weights(const std::string& name);
/// Same, throwing fundus::Error that lists the known names.
const KnownWeights& known_weights_named(const std::string& name);

/// torch.hub's folder: $TORCH_HOME/hub/checkpoints (see above). Not created here.
std::string hub_checkpoint_dir();
/// $FUNDUS_WEIGHTS_URL or https://download.pytorch.org/models (no trailing slash).
std::string weights_base_url();
std::string weights_url(const KnownWeights& weights, const std::string& base_url = "");

/// The cached file of these weights in `dir` ("" = hub_checkpoint_dir()), or "" when absent.
std::string cached_weights_path(const KnownWeights& weights, const std::string& dir = "");
/// The backbone's cached ImageNet weights: the default version when cached, else another cached
/// version, else nullptr.
const KnownWeights* find_cached_weights(const std::string& backbone, const std::string& dir = "");

/// Turns a model.pretrained value into a file to load for `backbone`:
///   ""                              -> ""
///   an existing file                -> itself
///   a weights name or "imagenet"    -> the file in the hub cache; throws when it is not cached
///                                      ("... run `fundus model fetch mobilenet_v2`") or when the
///                                      weights are for another backbone
///   other text with a '/' or '.'    -> itself (a path; reading it reports what is wrong)
///   any other word                  -> throws: neither a file nor a known name
std::string resolve_pretrained(const std::string& spec, const std::string& backbone);

struct FetchOptions {
  std::string dir;       // "" = hub_checkpoint_dir()
  std::string base_url;  // "" = weights_base_url()
  bool progress = true;
  bool force = false;  // download even when a verified file is already cached
};

struct FetchResult {
  std::string path;
  bool downloaded = false;  // false: a cached file verified and was kept
  int64_t bytes = 0;
  int64_t resumed_from = 0;  // bytes of an earlier partial download that were reused
};

/// Puts the weights into the cache: a cached file that verifies is kept; otherwise the file is
/// downloaded (download_file: resumable, SHA-256 prefix checked, atomic). Errors are one line that
/// ends with how to get the file offline.
FetchResult fetch_weights(const KnownWeights& weights, const FetchOptions& options = {});

/// Every known file with its state in `dir`: [{"name", "backbone", "version", "default", "file",
/// "url", "imagenet_top1", "approx_mb", "cached", "path", "partial_bytes"}].
Json weights_status(const std::string& dir = "", const std::string& base_url = "");
/// A readable table of weights_status() and the folder it describes.
std::string format_weights_status(const Json& status, const std::string& dir);

}  // namespace fundus
