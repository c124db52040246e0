#include "fundus/infer/checkpoint.h"

#include <torch/torch.h>

#include "fundus/core/io.h"

namespace fundus {

namespace {
constexpr char kMagic[] = "FNDCKPT1";
constexpr uint32_t kVersion = 1;

struct Payload {
  std::string meta, model, optimizer;
};

Payload parse(const std::string& path) {
  std::string bytes = read_framed_file(path, kMagic, kVersion, "checkpoint");
  BinaryReader in(bytes, path);
  Payload p;
  p.meta = in.get_string();
  p.model = in.get_string();
  p.optimizer = in.get_string();
  FUNDUS_CHECK(in.at_end(), path << ": checkpoint has trailing bytes");
  return p;
}
}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  BinaryWriter out;
  Json meta = c.meta;
  meta["format"] = "fundus-checkpoint";
  meta["torch_version"] = TORCH_VERSION;
  out.put_string(meta.dump());
  out.put_string(serialize_state_dict(c.model));
  out.put_string(c.optimizer_state);
  if (!parent_dir(path).empty()) make_dirs(parent_dir(path));
  write_framed_file(path, kMagic, kVersion, out.bytes());
}

Checkpoint load_checkpoint(const std::string& path) {
  Payload p = parse(path);
  Checkpoint c;
  c.meta = parse_json(p.meta, path + " (meta)");
  c.model = parse_state_dict(p.model, path + " (model)");
  c.optimizer_state = std::move(p.optimizer);
  FUNDUS_CHECK(c.meta.contains("config"), path << ": checkpoint has no run configuration");
  return c;
}

}  // namespace fundus
