#include "fundus/index/index_factory.h"

#include <set>

#include "fundus/core/error.h"
#include "fundus/core/strings.h"
#include "fundus/index/exact_index.h"
#include "fundus/index/hnsw_index.h"
#include "fundus/index/ivfpq_index.h"

namespace fundus {

namespace {
// Each type names its own constructor, so a type cannot be listed without one (and an unknown type
// never reaches a default branch).
using MakeFn = std::unique_ptr<VectorIndex> (*)(const IndexSpec& canonical, int dim);

struct TypeInfo {
  const char* type;
  std::map<std::string, int64_t> build;   // build-time keys with defaults
  std::map<std::string, int64_t> search;  // search-time keys with defaults
  MakeFn make;
};

std::unique_ptr<VectorIndex> make_exact(const IndexSpec&, int dim) { return std::make_unique<ExactIndex>(dim); }

std::unique_ptr<VectorIndex> make_hnsw(const IndexSpec& spec, int dim) {
  HnswParams p;
  p.M = int(spec.get("M", p.M));
  p.ef_construction = int(spec.get("efc", p.ef_construction));
  p.ef = int(spec.get("ef", p.ef));
  return std::make_unique<HnswIndex>(dim, p);
}

std::unique_ptr<VectorIndex> make_ivfpq(const IndexSpec& spec, int dim) {
  IvfPqParams p;
  p.nlist = int(spec.get("nlist", p.nlist));
  p.m = int(spec.get("m", p.m));
  p.nbits = int(spec.get("nbits", p.nbits));
  p.nprobe = int(spec.get("nprobe", p.nprobe));
  p.train = spec.get("train", p.train);
  p.seed = spec.get("seed", p.seed);
  p.vectors = spec.get("vectors", 1) != 0;
  p.rerank = int(spec.get("rerank", p.rerank));
  return std::make_unique<IvfPqIndex>(dim, p);
}

const std::vector<TypeInfo>& types() {
  static const HnswParams h;
  static const IvfPqParams v;
  static const std::vector<TypeInfo> t = {
      {"exact", {}, {}, make_exact},
      {"hnsw", {{"M", h.M}, {"efc", h.ef_construction}}, {{"ef", h.ef}}, make_hnsw},
      {"ivfpq",
       {{"nlist", v.nlist}, {"m", v.m}, {"nbits", v.nbits}, {"train", v.train}, {"seed", v.seed}, {"vectors", 1}},
       {{"nprobe", v.nprobe}, {"rerank", v.rerank}},
       make_ivfpq},
  };
  return t;
}

const TypeInfo& type_info(const std::string& type, const std::string& context) {
  std::vector<std::string> names;
  for (auto& t : types()) {
    if (type == t.type) return t;
    names.push_back(t.type);
  }
  FUNDUS_THROW(context << ": unknown index type '" << type << "' (known: " << join(names, ", ") << ")");
}

void check_keys(const IndexSpec& spec, const std::string& context) {
  const TypeInfo& info = type_info(spec.type, context);
  for (auto& [key, value] : spec.params) {
    if (info.build.count(key) || info.search.count(key)) continue;
    std::vector<std::string> known;
    for (auto& kv : info.build) known.push_back(kv.first);
    for (auto& kv : info.search) known.push_back(kv.first);
    FUNDUS_THROW(context << ": unknown parameter '" << key << "' for " << spec.type
                         << " (known: " << (known.empty() ? "none" : join(known, ", ")) << ")");
  }
}
}  // namespace

int64_t IndexSpec::get(const std::string& key, int64_t fallback) const {
  auto it = params.find(key);
  return it == params.end() ? fallback : it->second;
}

std::string IndexSpec::str() const {
  std::string s = type;
  const char* sep = ":";
  for (auto& [key, value] : params) {
    s += sep + key + "=" + std::to_string(value);
    sep = ",";
  }
  return s;
}

IndexSpec parse_index_spec(const std::string& text) {
  const std::string context = "index spec '" + text + "'";
  IndexSpec spec;
  std::string rest;
  size_t colon = text.find(':');
  spec.type = trim(text.substr(0, colon));
  if (colon != std::string::npos) rest = text.substr(colon + 1);
  if (!trim(rest).empty()) {
    for (auto& part : split(rest, ',')) {
      size_t eq = part.find('=');
      FUNDUS_CHECK(eq != std::string::npos, context << ": expected key=value, got '" << part << "'");
      std::string key = trim(part.substr(0, eq));
      FUNDUS_CHECK(!spec.params.count(key), context << ": parameter '" << key << "' given twice");
      spec.params[key] = parse_int(part.substr(eq + 1), context + " parameter '" + key + "'");
    }
  }
  check_keys(spec, context);
  return spec;
}

IndexSpec index_spec_from_json(const Json& value) {
  if (value.is_string()) return parse_index_spec(value.get<std::string>());
  FUNDUS_CHECK(value.is_object() && value.contains("type") && value["type"].is_string(),
               "index spec " << value.dump() << ": expected a string or an object with a \"type\"");
  IndexSpec spec;
  spec.type = value["type"].get<std::string>();
  for (auto& [key, v] : value.items()) {
    if (key == "type") continue;
    FUNDUS_CHECK(v.is_number_integer(), "index spec " << value.dump() << ": '" << key << "' must be an integer");
    spec.params[key] = v.get<int64_t>();
  }
  check_keys(spec, "index spec " + value.dump());
  return spec;
}

IndexSpec canonical_index_spec(const IndexSpec& spec) {
  check_keys(spec, "index spec '" + spec.str() + "'");
  const TypeInfo& info = type_info(spec.type, spec.str());
  IndexSpec out;
  out.type = spec.type;
  for (auto* defaults : {&info.build, &info.search})
    for (auto& [key, value] : *defaults) out.params[key] = spec.get(key, value);
  // Without the exact vectors there is nothing to re-rank with: the default depth becomes 0.
  if (out.type == "ivfpq" && out.params["vectors"] == 0 && !spec.params.count("rerank")) out.params["rerank"] = 0;
  return out;
}

bool same_index_build(const IndexSpec& a, const IndexSpec& b) {
  IndexSpec ca = canonical_index_spec(a), cb = canonical_index_spec(b);
  if (ca.type != cb.type) return false;
  for (auto& [key, value] : type_info(ca.type, ca.str()).build)
    if (ca.get(key, value) != cb.get(key, value)) return false;
  return true;
}

std::unique_ptr<VectorIndex> make_index(const IndexSpec& raw, int dim) {
  IndexSpec spec = canonical_index_spec(raw);
  for (auto& [key, value] : spec.params)
    FUNDUS_CHECK(value >= 0 && (key == "train" || key == "seed" || value <= 1000000000),
                 "index spec '" << spec.str() << "': " << key << "=" << value << " is out of range");
  return type_info(spec.type, "index spec '" + spec.str() + "'").make(spec, dim);
}

std::unique_ptr<VectorIndex> make_index(const std::string& spec, int dim) {
  return make_index(parse_index_spec(spec), dim);
}

}  // namespace fundus
