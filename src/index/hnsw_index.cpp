// The only translation unit that includes hnswlib: its hnswlib.h defines non-inline functions.
#include "fundus/index/hnsw_index.h"

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <queue>
#include <unordered_set>
#include <hnswlib/hnswlib.h>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/simd.h"
#include "topk.h"

namespace fundus {

namespace {
float inner_product_distance(const void* a, const void* b, const void* dim) {
  return 1.0f -
         dot_f32(static_cast<const float*>(a), static_cast<const float*>(b), int64_t(*static_cast<const size_t*>(dim)));
}

// hnswlib's InnerProductSpace picks SSE/AVX at compile time (baseline here); ours dispatches at run time.
class DotSpace : public hnswlib::SpaceInterface<float> {
 public:
  explicit DotSpace(size_t dim) : dim_(dim) {}
  size_t get_data_size() override { return dim_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return inner_product_distance; }
  void* get_dist_func_param() override { return &dim_; }

 private:
  size_t dim_;
};

// hnswlib serialises only to a named file: bounce through a private temporary file.
class TempFile {
 public:
  TempFile() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fundus-hnsw-XXXXXX").string();
    int fd = ::mkstemp(pattern.data());
    FUNDUS_CHECK(fd >= 0, "cannot create a temporary file in " << std::filesystem::temp_directory_path());
    ::close(fd);
    path_ = pattern;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void copy_stream(std::istream& in, std::ostream& out, uint64_t bytes) {
  std::vector<char> buf(1 << 20);
  while (bytes > 0) {
    size_t take = size_t(std::min<uint64_t>(bytes, buf.size()));
    in.read(buf.data(), std::streamsize(take));
    FUNDUS_CHECK(in.gcount() == std::streamsize(take), "unexpected end of data");
    out.write(buf.data(), std::streamsize(take));
    bytes -= take;
  }
}

// hnswlib 0.6.2 trusts its file: sizes, offsets, link counts and neighbour ids are used as read
// (fuzz/fuzz_index found reads outside its buffers while loading). The index file's checksum
// catches damage, not a file made to pass it, so every field that the loader and the searches use is
// checked here, streaming over the bytes hnswlib is about to load: the layout of this build's
// graphs (dim, M, ef_construction), element count against the bytes, link counts, neighbour ids
// and levels (a node reached on level L has that level), the entry point, distinct labels.
class HnswFileCheck {
 public:
  HnswFileCheck(std::istream& in, uint64_t size, const std::string& source) : in_(in), left_(size), source_(source) {}

  // Returns the number of elements.
  size_t run(size_t dim, size_t M, size_t ef_construction) {
    const uint64_t offset_level0 = get<uint64_t>(), max_elements = get<uint64_t>(), count = get<uint64_t>();
    const uint64_t size_per_element = get<uint64_t>(), label_offset = get<uint64_t>(), offset_data = get<uint64_t>();
    const int32_t max_level = get<int32_t>();
    const uint32_t entry = get<uint32_t>();
    const uint64_t max_m = get<uint64_t>(), max_m0 = get<uint64_t>(), m = get<uint64_t>();
    const double mult = get<double>();
    const uint64_t efc = get<uint64_t>();
    const uint64_t links0 = 2 * M * sizeof(uint32_t) + sizeof(uint32_t),
                   links = M * sizeof(uint32_t) + sizeof(uint32_t);
    const uint64_t data = dim * sizeof(float);
    check(m == M && max_m == M && max_m0 == 2 * M && efc == ef_construction, "parameters differ from the header");
    check(offset_level0 == 0 && offset_data == links0 && label_offset == links0 + data &&
              size_per_element == links0 + data + sizeof(uint64_t),
          "element layout differs from the header's dimension");
    check(std::isfinite(mult) && mult > 0, "level multiplier");
    check(count <= max_elements && count <= left_ / size_per_element && count < uint64_t(UINT32_MAX),
          "more elements than bytes");
    check(count == 0 ? max_level == -1 : (max_level >= 0 && max_level <= kMaxLevel && entry < count),
          "entry point or top level");
    std::vector<char> block(size_per_element);
    std::unordered_set<uint64_t> labels;
    for (uint64_t i = 0; i < count; ++i) {
      read(block.data(), block.size());
      list(block.data(), 2 * M, count);
      uint64_t label;
      std::memcpy(&label, block.data() + label_offset, sizeof label);
      check(labels.insert(label).second, "duplicate label");
    }
    levels_.assign(count, 0);
    std::vector<char> upper;
    for (uint64_t i = 0; i < count; ++i) {
      const uint32_t bytes = get<uint32_t>();
      check(bytes % links == 0 && bytes / links <= uint64_t(max_level), "link list size");
      levels_[i] = int(bytes / links);
      upper.resize(bytes);
      read(upper.data(), bytes);
      for (int level = 1; level <= levels_[i]; ++level) {
        const char* p = upper.data() + (level - 1) * links;
        list(p, M, count);
        for (uint16_t j = 0, n = count_of(p); j < n; ++j) reached_.push_back({link(p, j), level});
      }
    }
    check(left_ == 0, "trailing bytes");
    check(count == 0 || levels_[entry] == max_level, "entry point is not on the top level");
    for (const auto& [node, level] : reached_) check(levels_[node] >= level, "link to a node below its level");
    return size_t(count);
  }

 private:
  static constexpr int kMaxLevel = 64;  // levels are ~log_M(n): far below this for any real graph

  void check(bool ok, const char* what) const { FUNDUS_CHECK(ok, source_ << ": corrupt hnsw graph (" << what << ")"); }
  void read(char* out, uint64_t n) {
    check(n <= left_, "truncated");
    in_.read(out, std::streamsize(n));
    check(in_.gcount() == std::streamsize(n), "truncated");
    left_ -= n;
  }
  template <typename T>
  T get() {
    T v;
    read(reinterpret_cast<char*>(&v), sizeof v);
    return v;
  }
  static uint16_t count_of(const char* list) {  // hnswlib: the count is the low 16 bits of the header
    uint16_t n;
    std::memcpy(&n, list, sizeof n);
    return n;
  }
  static uint32_t link(const char* list, size_t j) {
    uint32_t v;
    std::memcpy(&v, list + sizeof(uint32_t) * (1 + j), sizeof v);
    return v;
  }
  void list(const char* p, uint64_t max_links, uint64_t count) const {
    check(count_of(p) <= max_links, "link count");
    for (uint16_t j = 0, n = count_of(p); j < n; ++j) check(link(p, j) < count, "neighbour id");
  }

  std::istream& in_;
  uint64_t left_;
  const std::string& source_;
  std::vector<int> levels_;
  std::vector<std::pair<uint32_t, int>> reached_;  // (node, level) of every upper-level link
};
}  // namespace

struct HnswIndex::Impl {
  explicit Impl(int dim) : space(size_t(dim)) {}
  DotSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;  // created by the first add or a load
  size_t reserved = 0;                                     // capacity asked for by reserve() before the graph exists

  using Graph = hnswlib::HierarchicalNSW<float>;
  using Pair = std::pair<float, hnswlib::tableint>;

  // hnswlib 0.6.2 has no filtered search (filter functors came in 0.7); this is the same search
  // written over its public members: greedy descent through the upper layers, then a beam search
  // of the base layer in which every node is a stepping stone but only live nodes the filter keeps
  // enter the result, and the beam stops only once it holds ef of them (or the graph is exhausted).
  void search_filtered(const float* query, size_t ef, const IdFilter& filter, TopK& out) const {
    const Graph& g = *graph;
    hnswlib::tableint cur = hnswlib::tableint(g.enterpoint_node_);
    float cur_dist = g.fstdistfunc_(query, g.getDataByInternalId(cur), g.dist_func_param_);
    for (int level = g.maxlevel_; level > 0; --level) {
      for (bool changed = true; changed;) {
        changed = false;
        unsigned int* data = g.get_linklist(cur, level);
        const int size = g.getListCount(data);
        const hnswlib::tableint* links = reinterpret_cast<const hnswlib::tableint*>(data + 1);
        for (int i = 0; i < size; ++i) {
          float d = g.fstdistfunc_(query, g.getDataByInternalId(links[i]), g.dist_func_param_);
          if (d < cur_dist) {
            cur_dist = d;
            cur = links[i];
            changed = true;
          }
        }
      }
    }
    auto kept = [&](hnswlib::tableint id) {
      return !g.isMarkedDeleted(id) && filter.keep(int64_t(g.getExternalLabel(id)));
    };
    hnswlib::VisitedList* vl = g.visited_list_pool_->getFreeVisitedList();
    hnswlib::vl_type* visited = vl->mass;
    const hnswlib::vl_type tag = vl->curV;
    auto by_first = [](const Pair& a, const Pair& b) { return a.first < b.first; };
    std::priority_queue<Pair, std::vector<Pair>, decltype(by_first)> top(by_first), candidates(by_first);
    float bound = std::numeric_limits<float>::max();
    if (kept(cur)) {
      top.emplace(cur_dist, cur);
      bound = cur_dist;
    }
    candidates.emplace(-cur_dist, cur);
    visited[cur] = tag;
    while (!candidates.empty()) {
      const Pair c = candidates.top();
      if (-c.first > bound && top.size() >= ef) break;
      candidates.pop();
      unsigned int* data = g.get_linklist0(c.second);
      const size_t size = g.getListCount(data);
      const hnswlib::tableint* links = reinterpret_cast<const hnswlib::tableint*>(data + 1);
      for (size_t j = 0; j < size; ++j) {
        const hnswlib::tableint id = links[j];
        if (visited[id] == tag) continue;
        visited[id] = tag;
        const float d = g.fstdistfunc_(query, g.getDataByInternalId(id), g.dist_func_param_);
        if (top.size() < ef || d < bound) {
          candidates.emplace(-d, id);
          if (kept(id)) {
            top.emplace(d, id);
            if (top.size() > ef) top.pop();
          }
          if (!top.empty()) bound = top.top().first;
        }
      }
    }
    g.visited_list_pool_->releaseVisitedList(vl);
    for (; !top.empty(); top.pop()) out.push(1.0f - top.top().first, int64_t(g.getExternalLabel(top.top().second)));
  }

  // Exact: every live node the filter keeps (`listed`: only these internal ids).
  void scan(const float* query, int k, const IdFilter* filter, const std::vector<hnswlib::tableint>* listed,
            int threads, int64_t* out_ids, float* out_scores) const {
    const Graph& g = *graph;
    const size_t dim = *static_cast<const size_t*>(g.dist_func_param_);
    const int64_t count = listed ? int64_t(listed->size()) : int64_t(g.cur_element_count);
    scan_topk(
        count, threads, k,
        [&](int64_t i, TopK& heap) {
          const hnswlib::tableint id = listed ? (*listed)[size_t(i)] : hnswlib::tableint(i);
          if (g.isMarkedDeleted(id)) return;
          const int64_t label = int64_t(g.getExternalLabel(id));
          if (filter && !listed && !filter->keep(label)) return;
          heap.push(dot_f32(query, reinterpret_cast<const float*>(g.getDataByInternalId(id)), int64_t(dim)), label);
        },
        out_ids, out_scores);
  }
};

HnswIndex::HnswIndex(int dim, const HnswParams& params)
    : VectorIndex(dim), params_(params), impl_(std::make_unique<Impl>(dim)) {
  FUNDUS_CHECK(params.M >= 2 && params.M <= 1024, "hnsw: M must be in 2..1024, got " << params.M);
  FUNDUS_CHECK(params.ef_construction >= 1, "hnsw: efc must be >= 1");
  FUNDUS_CHECK(params.ef >= 1, "hnsw: ef must be >= 1");
}

HnswIndex::~HnswIndex() = default;

std::string HnswIndex::describe() const {
  return strprintf("hnsw:M=%d,ef=%d,efc=%d", params_.M, params_.ef, params_.ef_construction);
}

int64_t HnswIndex::deleted_count() const { return impl_->graph ? int64_t(impl_->graph->num_deleted_) : 0; }

int64_t HnswIndex::native_count() const {
  return impl_->graph ? int64_t(impl_->graph->cur_element_count) - int64_t(impl_->graph->num_deleted_) : 0;
}

void HnswIndex::add_impl(int64_t n, const int64_t* ids, const float* vectors) {
  auto& graph = impl_->graph;
  try {
    if (!graph) {
      const size_t capacity = std::max({size_t(n), size_t(16), impl_->reserved});
      graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(&impl_->space, capacity, size_t(params_.M),
                                                                size_t(params_.ef_construction));
      graph->setEf(size_t(params_.ef));
    }
    size_t needed = graph->cur_element_count + size_t(n);
    if (needed > graph->max_elements_) graph->resizeIndex(std::max(needed, 2 * graph->max_elements_));
    int64_t start = 0;
    if (graph->cur_element_count == 0) {  // the entry point must exist before parallel inserts
      graph->addPoint(vectors, hnswlib::labeltype(ids[0]));
      start = 1;
    }
    std::unique_ptr<Progress> progress;
    if (n >= 20000) progress = std::make_unique<Progress>("hnsw insert", n - start, "vec");
    parallel_for(n - start, int(std::min<int64_t>(threads(), n - start)), [&](int64_t b, int64_t e) {
      for (int64_t i = start + b; i < start + e; ++i) {
        graph->addPoint(vectors + i * dim(), hnswlib::labeltype(ids[i]));
        if (progress && (i - start - b) % 256 == 255) progress->advance(256);
      }
    });
  } catch (const std::runtime_error& e) {
    if (dynamic_cast<const Error*>(&e)) throw;
    FUNDUS_THROW("hnsw add failed: " << e.what());
  }
}

void HnswIndex::remove_impl(const std::vector<int64_t>& ids) {
  for (int64_t id : ids) impl_->graph->markDelete(hnswlib::labeltype(id));
}

void HnswIndex::reserve_impl(int64_t n) {
  if (!impl_->graph) {
    impl_->reserved = size_t(n);
    return;
  }
  auto& g = *impl_->graph;
  if (size_t(n) > g.max_elements_) g.resizeIndex(size_t(n));
}

bool HnswIndex::prefer_scan(int64_t kept, int64_t size, int ef) {
  // A filtered traversal costs about kScanWork * ef / selectivity distances, a scan `kept` of them:
  // scan when kept^2 <= kScanWork * ef * size. Calibrated at 1M x 1024-d (docs/bench-index.md): at 1%
  // the scan took 15 ms against 45-96 ms for the traversal (ef 32-64), at 4% 74 ms against 6-21 ms;
  // the crossover (1.3% at ef 32, 2.2% at ef 64) gives kScanWork ~6.
  return kept >= 0 && double(kept) * double(kept) <= double(kScanWork) * double(ef) * double(size);
}

void HnswIndex::search_impl(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                            float* out_scores) const {
  const auto& graph = *impl_->graph;
  if (filter) {
    filtered_search(nq, queries, k, *filter, out_ids, out_scores);
    return;
  }
  parallel_for(nq, int(std::min<int64_t>(threads(), nq)), [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      auto found = graph.searchKnn(queries + q * dim(), size_t(k));  // farthest on top
      int n = int(found.size());
      for (int i = n - 1; i >= 0; --i) {
        out_ids[q * k + i] = int64_t(found.top().second);
        out_scores[q * k + i] = 1.0f - found.top().first;
        found.pop();
      }
      sort_row(out_ids + q * k, out_scores + q * k, n);
    }
  });
}

void HnswIndex::filtered_search(int64_t nq, const float* queries, int k, const IdFilter& filter, int64_t* out_ids,
                                float* out_scores) const {
  const auto& g = *impl_->graph;
  const int64_t live = native_count();
  const size_t ef = std::max(size_t(params_.ef), size_t(k));
  std::vector<int64_t> listed;
  std::vector<hnswlib::tableint> nodes;
  const bool scan_listed = prefer_scan(filter.count(), live, int(ef)) && filter.list(listed);
  if (scan_listed) {
    nodes.reserve(listed.size());
    for (int64_t id : listed) {
      auto it = g.label_lookup_.find(hnswlib::labeltype(id));
      if (it != g.label_lookup_.end()) nodes.push_back(it->second);
    }
  }
  // One query at a time (a scan uses the threads itself); queries of one call are rare when filtered.
  for (int64_t q = 0; q < nq; ++q) {
    const float* query = queries + q * dim();
    int64_t* ids = out_ids + q * k;
    float* scores = out_scores + q * k;
    if (scan_listed) {
      impl_->scan(query, k, &filter, &nodes, threads(), ids, scores);
      continue;
    }
    TopK found(k);
    impl_->search_filtered(query, ef, filter, found);
    found.write(ids, scores);
    // The traversal reached fewer than k kept nodes (very few kept, or cut off by deletions): every
    // kept node is then visited exactly, so a filtered search never returns fewer than it could.
    if (k > 0 && ids[k - 1] < 0) impl_->scan(query, k, &filter, nullptr, threads(), ids, scores);
  }
}

void HnswIndex::set_search_params_impl(const IndexSpec& spec) {
  params_.ef = int(spec.get("ef", params_.ef));
  FUNDUS_CHECK(params_.ef >= 1, "hnsw: ef must be >= 1");
  if (impl_->graph) impl_->graph->setEf(size_t(params_.ef));
}

void HnswIndex::write_native(std::ostream& out) const {
  if (!impl_->graph) return;  // empty index: no bytes
  TempFile tmp;
  impl_->graph->saveIndex(tmp.path());
  std::ifstream in(tmp.path(), std::ios::binary);
  in.seekg(0, std::ios::end);
  uint64_t size = uint64_t(in.tellg());
  in.seekg(0);
  copy_stream(in, out, size);
}

void HnswIndex::read_native(std::istream& in, uint64_t size, const std::string& source) {
  impl_->graph.reset();
  if (size == 0) return;
  TempFile tmp;
  {
    std::ofstream out(tmp.path(), std::ios::binary);
    copy_stream(in, out, size);
    FUNDUS_CHECK(out.flush(), "cannot write temporary file " << tmp.path());
  }
  size_t count = 0;
  {
    std::ifstream check(tmp.path(), std::ios::binary);
    count = HnswFileCheck(check, size, source).run(size_t(dim()), size_t(params_.M), size_t(params_.ef_construction));
  }
  try {
    // Capacity = the element count, not the file's max_elements (which could ask for any amount);
    // add() grows it.
    impl_->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(&impl_->space, tmp.path(), false, count);
  } catch (const std::exception& e) {
    FUNDUS_THROW(source << ": corrupt hnsw graph (" << e.what() << ")");
  }
  auto& g = *impl_->graph;
  // hnswlib 0.6.2's loading constructor leaves num_deleted_ uninitialised before counting into it.
  g.num_deleted_ = 0;
  for (size_t i = 0; i < g.cur_element_count; ++i) g.num_deleted_ += g.isMarkedDeleted(hnswlib::tableint(i)) ? 1 : 0;
  FUNDUS_CHECK(g.size_data_per_element_ == g.size_links_level0_ + g.data_size_ + sizeof(hnswlib::labeltype) &&
                   impl_->graph->M_ == size_t(params_.M) &&
                   impl_->graph->ef_construction_ == size_t(params_.ef_construction),
               source << ": hnsw graph does not match its header (" << describe() << ", dim " << dim() << ")");
  impl_->graph->setEf(size_t(params_.ef));
}

}  // namespace fundus
