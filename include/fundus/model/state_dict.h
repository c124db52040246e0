// PyTorch weight files (.pth) without Python: reading what torch.save writes (its zip format and the
// legacy format of PyTorch < 1.6, in which older torchvision files are), writing
// files that Python's torch.load reads, and copying a state_dict into a LibTorch module by name.
//
// Reading: a small zip reader (fundus/model/zip_archive.h) plus a minimal pickle virtual machine for
// the protocol-2 opcodes torch.save emits. It handles torch.save(model.state_dict()) (a pickled
// collections.OrderedDict with a _metadata attribute, which LibTorch's torch::pickle_load turns into
// None) as well as torch.save(dict(...)), tensors rebuilt by torch._utils._rebuild_tensor_v2 (storage
// offset, size, stride; views sharing one storage stay views) or _rebuild_parameter, storages of
// dtype float32/64, float16, bfloat16, int64/32/16, int8, uint8 and bool. Nested dicts (e.g. a
// checkpoint {"model": {...}, "epoch": 3}) are flattened with "." ("model.conv1.weight"); non-tensor
// leaves are skipped. The legacy format is five pickles back to back followed by the raw storages.
// Errors (fundus::Error, naming the file): PyTorch's pre-2017 tar format, TorchScript archives,
// truncated files, missing data records, unsupported dtypes or opcodes, out-of-bounds views.
//
// Thread safety: all functions are reentrant; load_into mutates the given module only.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "fundus/core/error.h"

namespace fundus {

/// Ordered name -> tensor map (file order). Tensors are CPU, dtype as stored.
using StateDict = torch::OrderedDict<std::string, torch::Tensor>;

/// Reads a torch.save zip file. `source` names the data in error messages.
StateDict read_state_dict(const std::string& path);
StateDict parse_state_dict(const std::string& bytes, const std::string& source);

/// Writes tensors as a plain dict in torch.save's zip format (protocol 2, storages of the tensors'
/// dtypes, contiguous copies), atomically. Python: torch.load(path) -> dict; LibTorch's pickle_load
/// also reads it. Tensors on other devices are copied to the CPU.
void write_state_dict(const std::string& path, const StateDict& state);
std::string serialize_state_dict(const StateDict& state);

/// The module's parameters and buffers (registered names, in registration order), detached.
StateDict module_state_dict(const torch::nn::Module& module);

struct LoadOptions {
  /// Prepended to every file key to form the module name (e.g. "backbone." to load a torchvision
  /// file into RetrievalNet); file keys not starting with strip_prefix are unexpected.
  std::string add_prefix;
  std::string strip_prefix;
  /// Module entries that may be absent from the file (e.g. an attention block on top of a
  /// pretrained backbone); names starting with any of these are not reported as missing.
  std::vector<std::string> allow_missing_prefixes;
  /// File entries that may be unused (e.g. torchvision's "classifier." / "fc." heads).
  std::vector<std::string> ignore_unexpected_prefixes;
  /// Throw when anything is missing, unexpected (beyond the allowances) or mis-shaped.
  bool strict = true;
};

struct LoadReport {
  std::vector<std::string> loaded;   // module names filled from the file
  std::vector<std::string> missing;  // module names absent from the file (not allowed)
  std::vector<std::string> allowed_missing;
  std::vector<std::string> unexpected;  // file names with no module entry (not ignored)
  std::vector<std::string> ignored;     // file names unused by allowance
  std::vector<std::string> mismatched;  // "name: file [a,b] vs module [c,d]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;  // one readable paragraph
};

/// Copies tensors into the module's parameters and buffers by name (values converted to the
/// module's dtype/device, no autograd). Mis-shaped entries are never copied. With options.strict a
/// report that is not ok() throws, listing the names (nothing is copied in that case).
LoadReport load_into(torch::nn::Module& module, const StateDict& state, const LoadOptions& options = {});

}  // namespace fundus
