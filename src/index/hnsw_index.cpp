// The only translation unit that includes hnswlib: its hnswlib.h defines non-inline functions.
#include "fundus/index/hnsw_index.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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
  return 1.0f - dot_f32(static_cast<const float*>(a), static_cast<const float*>(b),
                        int64_t(*static_cast<const size_t*>(dim)));
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
}  // namespace

struct HnswIndex::Impl {
  explicit Impl(int dim) : space(size_t(dim)) {}
  DotSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;  // created by the first add or a load
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
      graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(&impl_->space, size_t(std::max<int64_t>(n, 16)),
                                                                size_t(params_.M), size_t(params_.ef_construction));
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

void HnswIndex::search_impl(int64_t nq, const float* queries, int k, int64_t* out_ids, float* out_scores) const {
  const auto& graph = *impl_->graph;
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
  try {
    impl_->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(&impl_->space, tmp.path(), false, 0);
  } catch (const std::exception& e) {
    FUNDUS_THROW(source << ": corrupt hnsw graph (" << e.what() << ")");
  }
  auto& g = *impl_->graph;
  // hnswlib 0.6.2's loading constructor leaves num_deleted_ uninitialised before counting into it.
  g.num_deleted_ = 0;
  for (size_t i = 0; i < g.cur_element_count; ++i) g.num_deleted_ += g.isMarkedDeleted(hnswlib::tableint(i)) ? 1 : 0;
  FUNDUS_CHECK(g.size_data_per_element_ == g.size_links_level0_ + g.data_size_ + sizeof(hnswlib::labeltype) &&
                   impl_->graph->M_ == size_t(params_.M) && impl_->graph->ef_construction_ == size_t(params_.ef_construction),
               source << ": hnsw graph does not match its header (" << describe() << ", dim " << dim() << ")");
  impl_->graph->setEf(size_t(params_.ef));
}

}  // namespace fundus
