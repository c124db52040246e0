#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <thread>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/rng.h"
#include "fundus/index/exact_index.h"
#include "fundus/index/hnsw_index.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/index_file.h"
#include "fundus/index/ivfpq_index.h"
#include "fundus/index/simd.h"
#include "fundus/index/synthetic.h"
#include "test_support.h"

using namespace fundus;

namespace {

std::vector<int64_t> iota_ids(int64_t n, int64_t first = 0) {
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

// Top-k by a plain double-precision loop over (id, vector) pairs: the reference for ExactIndex.
std::vector<std::pair<double, int64_t>> naive_topk(const std::vector<float>& data, const std::vector<int64_t>& ids,
                                                   int dim, const float* query, int k) {
  std::vector<std::pair<double, int64_t>> all;
  for (size_t r = 0; r < ids.size(); ++r) {
    double s = 0;
    for (int j = 0; j < dim; ++j) s += double(data[r * size_t(dim) + size_t(j)]) * query[j];
    all.push_back({s, ids[r]});
  }
  std::sort(all.begin(), all.end(),
            [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  all.resize(std::min(all.size(), size_t(k)));
  return all;
}

// Checks one result row against the double-precision reference: same scores (float rounding) and
// the same ids, except that neighbours whose exact scores are within float noise may swap.
void expect_matches_naive(const SearchResult& r, int64_t q, const std::vector<std::pair<double, int64_t>>& want) {
  ASSERT_EQ(int(want.size()), std::min<int>(r.k, int(want.size())));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(r.scores_row(q)[i], want[i].first, 2e-6) << "query " << q << " rank " << i;
    if (r.ids_row(q)[i] != want[i].second) {
      bool near_tie = (i > 0 && want[i].first - want[i - 1].first > -4e-6) ||
                      (i + 1 < want.size() && want[i].first - want[i + 1].first < 4e-6);
      EXPECT_TRUE(near_tie) << "query " << q << " rank " << i << ": " << r.ids_row(q)[i] << " vs " << want[i].second;
    }
  }
}

void expect_identical(const SearchResult& a, const SearchResult& b) {
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.scores, b.scores);
}

}  // namespace

TEST(Simd, DotMatchesDoubleForAllLengthsAndTails) {
  Rng rng(7);
  std::vector<float> a(300), b(300);
  for (auto& x : a) x = float(rng.normal());
  for (auto& x : b) x = float(rng.normal());
  for (int n : {0, 1, 3, 15, 16, 17, 63, 64, 65, 127, 128, 200, 300}) {
    double want = 0, mag = 0;
    for (int i = 0; i < n; ++i) {
      want += double(a[size_t(i)]) * b[size_t(i)];
      mag += std::fabs(double(a[size_t(i)]) * b[size_t(i)]);
    }
    EXPECT_NEAR(dot_f32(a.data(), b.data(), n), want, 1e-6 * (mag + 1)) << n;
  }
  EXPECT_FLOAT_EQ(dot_f32(a.data(), a.data(), 2), a[0] * a[0] + a[1] * a[1]);
  std::string level = simd_level();
  EXPECT_TRUE(level == "avx512" || level == "avx2" || level == "baseline") << level;
}

TEST(Synthetic, ClusteredVectorsAreUnitDeterministicAndThreadIndependent) {
  auto a = clustered_vectors(300, 33, 10, 0.5f, 42, 1);
  auto b = clustered_vectors(300, 33, 10, 0.5f, 42, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, clustered_vectors(300, 33, 10, 0.5f, 43, 1));
  for (int i = 0; i < 300; ++i) EXPECT_NEAR(dot_f32(&a[size_t(i) * 33], &a[size_t(i) * 33], 33), 1.0, 1e-5);
  // Rows first_row.. are the same rows whether generated at once or in chunks.
  auto tail = clustered_vectors(100, 33, 10, 0.5f, 42, 2, 200);
  EXPECT_EQ(tail, std::vector<float>(a.begin() + 200 * 33, a.end()));
}

TEST(Synthetic, ManifoldVectorsAreUnitDeterministicChunkableAndStructured) {
  ManifoldParams p;
  p.centres = 5;
  auto a = manifold_vectors(400, 64, p, 7, 1);
  EXPECT_EQ(a, manifold_vectors(400, 64, p, 7, 2));
  EXPECT_EQ(manifold_vectors(150, 64, p, 7, 2, 250), std::vector<float>(a.begin() + 250 * 64, a.end()));
  double mean_cos = 0;
  for (int i = 0; i < 400; ++i) {
    EXPECT_NEAR(dot_f32(&a[size_t(i) * 64], &a[size_t(i) * 64], 64), 1.0, 1e-5);
    if (i > 0) mean_cos += dot_f32(&a[size_t(i) * 64], &a[size_t(i - 1) * 64], 64) / 399;
  }
  EXPECT_GT(mean_cos, 0.6);  // inside a cone, like real descriptors (common = 2)
}

TEST(ExactIndex, EqualsNaiveDoubleLoopOnBothPaths) {
  const int dim = 70;  // not a multiple of 16: exercises the kernel tails
  const int64_t n = 3000;
  auto data = clustered_vectors(n, dim, 50, 0.6f, 1);
  auto ids = iota_ids(n, 1000);
  Rng rng(3);
  rng.shuffle(ids);  // ids unrelated to row order
  ExactIndex index(dim);
  index.add(ids, data);
  auto queries = clustered_vectors(40, dim, 50, 0.6f, 2);
  // 3 queries take the SIMD scan path, 40 the BLAS path; both must agree with the reference.
  for (int64_t nq : {int64_t(3), int64_t(40)}) {
    ASSERT_EQ(nq < ExactIndex::kGemmMinQueries, nq == 3);
    SearchResult r = index.search(nq, queries.data(), 10);
    ASSERT_EQ(r.ids.size(), size_t(nq * 10));
    for (int64_t q = 0; q < nq; ++q)
      expect_matches_naive(r, q, naive_topk(data, ids, dim, queries.data() + q * dim, 10));
  }
  // Thread count does not change results.
  SearchResult two = index.search(40, queries.data(), 10);
  index.set_threads(1);
  expect_identical(index.search(40, queries.data(), 10), two);
}

TEST(ExactIndex, PaddingTiesAndValidation) {
  ExactIndex index(4);
  float q[4] = {1, 0, 0, 0};
  SearchResult empty = index.search(1, q, 3);
  EXPECT_EQ(empty.ids, (std::vector<int64_t>{-1, -1, -1}));
  EXPECT_TRUE(std::isinf(empty.scores[0]) && empty.scores[0] < 0);

  // Two identical vectors: the tie is broken by the smaller id.
  std::vector<float> v = {1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0};
  index.add({9, 4, 7}, v);
  SearchResult r = index.search(1, q, 5);
  EXPECT_EQ(r.ids, (std::vector<int64_t>{4, 9, 7, -1, -1}));
  EXPECT_EQ(r.scores[0], 1.f);
  EXPECT_EQ(r.scores[2], 0.f);
  EXPECT_EQ(r.scores[3], kMissingScore);

  std::vector<float> one = {0, 0, 1, 0};
  EXPECT_NE(error_of([&] { index.add({4}, one); }).find("id 4 is already in the index"), std::string::npos);
  EXPECT_NE(error_of([&] { index.add({1, 1}, {0, 0, 1, 0, 0, 0, 1, 0}); }).find("occurs twice"), std::string::npos);
  EXPECT_NE(error_of([&] { index.add({-2}, one); }).find("negative id"), std::string::npos);
  EXPECT_NE(error_of([&] { index.add({5}, {0, 0, 1}); }).find("need 4 floats"), std::string::npos);
  EXPECT_NE(error_of([&] { index.add({5}, {0, NAN, 1, 0}); }).find("non-finite"), std::string::npos);
  EXPECT_NE(error_of([&] { index.search(1, q, 0); }).find("k must be in 1..100000, got 0"), std::string::npos);
  EXPECT_EQ(index.size(), 3);
}

TEST(IndexSpec, ParsesCanonicalisesAndRejects) {
  IndexSpec s = parse_index_spec("hnsw:M=32,efc=200,ef=64");
  EXPECT_EQ(s.type, "hnsw");
  EXPECT_EQ(s.get("M", 0), 32);
  EXPECT_EQ(canonical_index_spec(parse_index_spec("hnsw:M=8")).str(), "hnsw:M=8,ef=64,efc=200");
  EXPECT_EQ(canonical_index_spec(parse_index_spec("exact")).str(), "exact");
  EXPECT_EQ(canonical_index_spec(parse_index_spec("ivfpq:nlist=4")).str(),
            "ivfpq:m=64,nbits=8,nlist=4,nprobe=16,rerank=500,seed=1,train=65536,vectors=1");
  // Without the exact vectors the default re-rank depth is 0, and asking for one is an error.
  EXPECT_EQ(canonical_index_spec(parse_index_spec("ivfpq:vectors=0")).get("rerank", -1), 0);
  EXPECT_NE(error_of([] { make_index("ivfpq:vectors=0,rerank=50", 64); }).find("needs the exact vectors"),
            std::string::npos);
  EXPECT_FALSE(same_index_build(parse_index_spec("ivfpq:vectors=0"), parse_index_spec("ivfpq")));
  EXPECT_TRUE(same_index_build(parse_index_spec("ivfpq:rerank=10"), parse_index_spec("ivfpq:rerank=500")));
  EXPECT_EQ(index_spec_from_json(parse_json(R"({"type":"hnsw","M":12,"ef":20})", "t")).str(), "hnsw:M=12,ef=20");
  EXPECT_EQ(index_spec_from_json(Json("exact")).type, "exact");
  EXPECT_TRUE(same_index_build(parse_index_spec("hnsw:M=16,ef=10"), parse_index_spec("hnsw:M=16,ef=99")));
  EXPECT_FALSE(same_index_build(parse_index_spec("hnsw:M=16"), parse_index_spec("hnsw:M=32")));
  EXPECT_FALSE(same_index_build(parse_index_spec("exact"), parse_index_spec("hnsw")));

  EXPECT_NE(error_of([] { parse_index_spec("annoy"); }).find("unknown index type 'annoy' (known: exact, hnsw, ivfpq)"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_index_spec("hnsw:efConstruction=5"); }).find("unknown parameter 'efConstruction'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_index_spec("hnsw:M=x"); }), "");
  EXPECT_NE(error_of([] { parse_index_spec("hnsw:M"); }).find("expected key=value"), std::string::npos);
  EXPECT_NE(error_of([] { make_index("ivfpq:m=7", 64); }).find("must divide the dimension"), std::string::npos);
  // A spec built in code (not parsed) with an unknown type is an error too, never some default index.
  IndexSpec bogus;
  bogus.type = "flat";
  EXPECT_NE(error_of([&] { make_index(bogus, 8); }).find("unknown index type 'flat'"), std::string::npos);
  bogus.type = "";
  EXPECT_NE(error_of([&] { make_index(bogus, 8); }).find("unknown index type ''"), std::string::npos);
  EXPECT_NE(error_of([] { make_index("hnsw:M=1", 8); }), "");
  auto h = make_index("hnsw:M=8,efc=40,ef=20", 16);
  EXPECT_EQ(h->type(), "hnsw");
  EXPECT_EQ(h->describe(), "hnsw:M=8,ef=20,efc=40");
  h->set_search_params(parse_index_spec("hnsw:ef=99"));
  EXPECT_EQ(h->describe(), "hnsw:M=8,ef=99,efc=40");
  EXPECT_NE(error_of([&] { h->set_search_params(parse_index_spec("ivfpq:nprobe=3")); }), "");
}

TEST(HnswIndex, RecallOnClusteredData) {
  // Queries: 200 more points of the same distribution, not in the index.
  const int dim = 64;
  auto data = clustered_vectors(10200, dim, 200, 1.2f, 11);
  std::vector<float> queries(data.end() - 200 * dim, data.end());
  data.resize(10000 * dim);
  auto ids = iota_ids(10000);
  ExactIndex exact(dim);
  exact.add(ids, data);
  SearchResult truth = exact.search(queries, 10);

  HnswIndex hnsw(dim, {16, 100, 64});
  hnsw.add(ids, data);
  double recall = recall_at_k(truth, hnsw.search(queries, 10));
  EXPECT_GE(recall, 0.95) << "hnsw:M=16,efc=100,ef=64";  // measured 0.9945; ef=10 gives 0.934
  hnsw.set_search_params(parse_index_spec("hnsw:ef=10"));
  EXPECT_LT(recall_at_k(truth, hnsw.search(queries, 10)), recall);
  hnsw.set_search_params(parse_index_spec("hnsw:ef=200"));
  EXPECT_GE(recall_at_k(truth, hnsw.search(queries, 10)), std::max(recall, 0.99));
  // Scores are true inner products of the returned ids.
  SearchResult r = hnsw.search(1, queries.data(), 3);
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(r.scores[size_t(i)], dot_f32(queries.data(), data.data() + r.ids[size_t(i)] * dim, dim), 1e-5);
}

namespace {
// 10,000 clustered 64-d vectors (ids from 5), 200 queries of the same distribution and their exact
// top 10.
struct ClusteredSet {
  static constexpr int kDim = 64;
  std::vector<float> data, queries;
  std::vector<int64_t> ids = iota_ids(10000, 5);
  SearchResult truth;
  ClusteredSet() {
    data = clustered_vectors(10200, kDim, 200, 1.2f, 21);
    queries.assign(data.end() - 200 * kDim, data.end());
    data.resize(10000 * kDim);
    ExactIndex exact(kDim);
    exact.add(ids, data);
    truth = exact.search(queries, 10);
  }
};
}  // namespace

TEST(IvfPqIndex, RecallOnClusteredData) {
  const ClusteredSet set;
  const int dim = ClusteredSet::kDim;
  const auto& [data, queries, ids, truth] = set;

  IvfPqParams p;
  p.vectors = false;  // the codes alone (re-ranking: the next test)
  p.rerank = 0;
  p.nlist = 64;
  p.m = 32;     // 2 dims per sub-quantizer: 32 bytes per vector instead of 256
  p.nbits = 6;  // 64 codes: trains from 5000 vectors without FAISS's "too few points" warnings
  p.nprobe = 8;
  p.train = 5000;
  IvfPqIndex ivf(dim, p);
  ivf.set_threads(1);  // FAISS's OpenMP spin-waits; one thread is faster on a busy 2-core box
  EXPECT_FALSE(ivf.is_trained());
  ivf.add(ids, data);
  EXPECT_TRUE(ivf.is_trained());
  EXPECT_EQ(ivf.size(), 10000);
  double recall = recall_at_k(truth, ivf.search(queries, 10));
  EXPECT_GE(recall, 0.7) << ivf.describe();  // measured 0.756
  ivf.set_search_params(parse_index_spec("ivfpq:nprobe=1"));
  EXPECT_LT(recall_at_k(truth, ivf.search(queries, 10)), recall);

  // Too few vectors to train is a clear error, and the index stays empty.
  p.nbits = 8;
  IvfPqIndex small(dim, p);
  // Pointers, not the structured bindings: C++17 lambdas cannot capture those (clang enforces it).
  const int64_t* few_ids = ids.data();
  const float* few = data.data();
  EXPECT_NE(error_of([&] { small.add(100, few_ids, few); }).find("training needs at least 256 vectors"),
            std::string::npos);
  EXPECT_EQ(small.size(), 0);
}

TEST(IvfPqIndex, ReranksExactlyFromTheMappedVectorFile) {
  const ClusteredSet set;
  const int dim = ClusteredSet::kDim;
  const auto& [data, queries, ids, truth] = set;

  auto index = make_index("ivfpq:nlist=64,m=16,nbits=6,nprobe=16,train=5000,rerank=0", dim);
  auto& ivf = dynamic_cast<IvfPqIndex&>(*index);
  ivf.set_threads(1);
  ivf.add(ids, data);
  EXPECT_EQ(ivf.pending_vectors(), 10000);  // not saved yet: in memory
  const double codes_only = recall_at_k(truth, ivf.search(queries, 10));
  ivf.set_search_params(parse_index_spec("ivfpq:rerank=100"));
  SearchResult reranked = ivf.search(queries, 10);
  const double with_rerank = recall_at_k(truth, reranked);
  EXPECT_LT(codes_only, 0.75);                                            // measured 0.605: 4 dims per 6-bit code
  EXPECT_GE(with_rerank, 0.9) << "codes only: " << codes_only;            // measured 0.943 (capped by nprobe)
  ivf.set_search_params(parse_index_spec("ivfpq:nprobe=64,rerank=200"));  // every list
  EXPECT_GE(recall_at_k(truth, ivf.search(queries, 10)), 0.99);
  ivf.set_search_params(parse_index_spec("ivfpq:nprobe=16,rerank=100"));
  // Re-ranked scores are the exact inner products.
  for (int i = 0; i < 10; ++i)
    EXPECT_FLOAT_EQ(reranked.scores[size_t(i)],
                    dot_f32(queries.data(), data.data() + (reranked.ids[size_t(i)] - 5) * dim, dim));

  // Saving writes <index>.vectors and maps it: the in-memory copies are released, results unchanged.
  test::TempDir dir;
  const std::string path = dir.file("v.idx");
  IndexProvenance prov{"store-x", 1, 4, "tok-a"};
  ivf.save(path, prov);
  ASSERT_TRUE(file_exists(path + ".vectors"));
  EXPECT_EQ(ivf.pending_vectors(), 0);
  expect_identical(ivf.search(queries, 10), reranked);
  LoadedIndex loaded = load_index(path);
  loaded.index->set_threads(1);
  expect_identical(loaded.index->search(queries, 10), reranked);
  // A vector added after the load is re-ranked from memory until the next save.
  std::vector<float> fresh(data.begin(), data.begin() + dim);
  fresh[0] += 0.25f;
  loaded.index->add({1}, fresh);
  EXPECT_EQ(dynamic_cast<IvfPqIndex&>(*loaded.index).pending_vectors(), 1);
  SearchResult top = loaded.index->search(1, fresh.data(), 1);
  EXPECT_EQ(top.ids[0], 1);
  EXPECT_FLOAT_EQ(top.scores[0], dot_f32(fresh.data(), fresh.data(), dim));

  // The vector file must be there, intact and of the same state as the index.
  const std::string vectors = read_file(path + ".vectors");
  std::remove((path + ".vectors").c_str());
  EXPECT_NE(error_of([&] { load_index(path); }).find("vector file not found"), std::string::npos);
  std::string flipped = vectors;
  flipped[flipped.size() / 2] ^= 4;
  write_file_atomic(path + ".vectors", flipped);
  EXPECT_NE(error_of([&] { load_index(path); }).find("checksum"), std::string::npos);
  ivf.save(dir.file("w.idx"), IndexProvenance{"store-x", 1, 5, "tok-b"});  // same ids, another state
  write_file_atomic(path + ".vectors", read_file(dir.file("w.idx.vectors")));
  EXPECT_NE(error_of([&] { load_index(path); }).find("do not match the index"), std::string::npos);
  write_file_atomic(path + ".vectors", vectors);
  EXPECT_NO_THROW(load_index(path));

  // Codes only (vectors=0): no companion file.
  auto plain = make_index("ivfpq:nlist=64,m=16,nbits=6,nprobe=16,train=5000,vectors=0", dim);
  plain->set_threads(1);
  plain->add(ids, data);
  plain->save(dir.file("p.idx"), prov);
  EXPECT_FALSE(file_exists(dir.file("p.idx.vectors")));
  LoadedIndex plain_loaded = load_index(dir.file("p.idx"));
  plain_loaded.index->set_threads(1);
  EXPECT_EQ(recall_at_k(truth, plain_loaded.index->search(queries, 10)), codes_only);
}

namespace {
// Every index type: removed ids disappear from results, size follows, re-adding works, and a
// save/load round trip reproduces the results bit for bit.
void check_remove_and_round_trip(const std::string& spec) {
  SCOPED_TRACE(spec);
  const int dim = 32;
  const int64_t n = 3000;
  auto data = clustered_vectors(n, dim, 40, 0.7f, 31);
  auto ids = iota_ids(n, 100);
  auto index = make_index(spec, dim);
  index->set_threads(1);  // deterministic hnsw graph
  index->add(ids, data);
  auto queries = clustered_vectors(20, dim, 40, 0.7f, 32);
  SearchResult before = index->search(queries, 5);

  // Remove every id that was a top-1 hit, plus an unknown one.
  std::vector<int64_t> gone;
  for (int64_t q = 0; q < 20; ++q) gone.push_back(before.ids_row(q)[0]);
  std::sort(gone.begin(), gone.end());
  gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
  std::vector<int64_t> to_remove = gone;
  to_remove.push_back(999999);
  EXPECT_EQ(index->remove(to_remove), int64_t(gone.size()));
  EXPECT_EQ(index->size(), n - int64_t(gone.size()));
  EXPECT_FALSE(index->contains(gone[0]));
  SearchResult after = index->search(queries, 5);
  for (int64_t id : after.ids) EXPECT_FALSE(std::binary_search(gone.begin(), gone.end(), id)) << id;

  // Save/load: identical results and ids.
  test::TempDir dir;
  IndexProvenance prov{"store-x", 3, 17, "tok-1"};
  index->save(dir.file("i.idx"), prov);
  LoadedIndex loaded = load_index(dir.file("i.idx"));
  EXPECT_EQ(loaded.index->describe(), index->describe());
  EXPECT_EQ(loaded.index->ids(), index->ids());
  EXPECT_EQ(loaded.info.provenance.store_id, "store-x");
  EXPECT_EQ(loaded.info.provenance.model_id, 3);
  EXPECT_EQ(loaded.info.provenance.embeddings_version, 17);
  EXPECT_EQ(loaded.info.provenance.embeddings_token, "tok-1");
  EXPECT_EQ(loaded.info.count, index->size());
  EXPECT_EQ(loaded.info.ids_sha256, ids_checksum(index->ids()));
  expect_identical(loaded.index->search(queries, 5), after);
  IndexFileInfo info = read_index_info(dir.file("i.idx"));
  EXPECT_EQ(info.spec, index->describe());
  EXPECT_EQ(info.file_bytes, read_file(dir.file("i.idx")).size());

  // Re-adding a removed id works (on the loaded copy too).
  std::vector<float> back(data.begin() + (gone[0] - 100) * dim, data.begin() + (gone[0] - 100 + 1) * dim);
  loaded.index->add({gone[0]}, back);
  EXPECT_TRUE(loaded.index->contains(gone[0]));
  EXPECT_EQ(loaded.index->search(1, back.data(), 1).ids[0], gone[0]);
}
}  // namespace

TEST(VectorIndex, RemoveAndRoundTripExact) { check_remove_and_round_trip("exact"); }
TEST(VectorIndex, RemoveAndRoundTripHnsw) { check_remove_and_round_trip("hnsw:M=12,efc=60,ef=40"); }
TEST(VectorIndex, RemoveAndRoundTripIvfPq) { check_remove_and_round_trip("ivfpq:nlist=16,m=8,nbits=6,nprobe=4"); }

TEST(VectorIndex, EmptyIndexesSaveAndLoad) {
  test::TempDir dir;
  for (std::string spec : {"exact", "hnsw", "ivfpq:nlist=4,m=4"}) {
    auto index = make_index(spec, 8);
    index->save(dir.file("e.idx"), {});
    LoadedIndex loaded = load_index(dir.file("e.idx"));
    EXPECT_EQ(loaded.index->size(), 0) << spec;
    float q[8] = {1};
    EXPECT_EQ(loaded.index->search(1, q, 2).ids, (std::vector<int64_t>{-1, -1})) << spec;
  }
}

TEST(IndexFile, TruncatedCorruptAndForeignFilesAreErrors) {
  test::TempDir dir;
  auto index = make_index("hnsw:M=8,efc=40", 16);
  index->add(iota_ids(500), clustered_vectors(500, 16, 10, 0.5f, 1));
  std::string path = dir.file("i.idx");
  index->save(path, {});
  std::string bytes = read_file(path);

  write_file_atomic(path, bytes.substr(0, bytes.size() / 2));
  EXPECT_NE(error_of([&] { load_index(path); }).find("truncated"), std::string::npos);
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x5a;
  write_file_atomic(path, flipped);
  EXPECT_NE(error_of([&] { load_index(path); }).find("checksum mismatch"), std::string::npos);
  write_file_atomic(path, "FNDCKPT1" + bytes.substr(8));
  EXPECT_NE(error_of([&] { load_index(path); }).find("not a vector index file"), std::string::npos);
  EXPECT_NE(error_of([&] { load_index(dir.file("none.idx")); }).find("index file not found"), std::string::npos);
}

namespace {
// An index saved at `path` whose native bytes (hnswlib's or FAISS's file) can be patched behind a
// valid frame: patch(offset into the native bytes, value, width) rewrites the file and returns the
// error of loading it and searching it once ("" when both succeed).
class PatchableIndexFile {
 public:
  PatchableIndexFile(const VectorIndex& index, std::string path) : path_(std::move(path)) {
    index.save(path_, {});
    payload_ = read_framed_file(path_, "FNDINDX1", 2, "index");
    uint64_t header_size = 0;
    std::memcpy(&header_size, payload_.data(), sizeof header_size);
    native_ = sizeof header_size + header_size;
  }
  std::string patch(size_t offset, uint64_t value, size_t width = 8) const {
    std::string p = payload_;
    std::memcpy(p.data() + native_ + offset, &value, width);
    write_framed_file(path_, "FNDINDX1", 2, p);
    return error_of([&] {
      LoadedIndex loaded = load_index(path_);
      std::vector<float> q(size_t(loaded.index->dim()), 0.25f);
      loaded.index->search(q, 5);
    });
  }

 private:
  std::string path_, payload_;
  size_t native_ = 0;
};
}  // namespace

// Found by fuzz/fuzz_index: behind a valid checksum (a file made to pass it), hnswlib 0.6.2 used the
// graph's sizes and neighbour ids as read; a neighbour id past the end made the next search read
// far outside the graph (SIGSEGV). Every field is now checked before hnswlib loads the bytes.
TEST(IndexFile, HnswGraphFieldsAreCheckedBehindAValidChecksum) {
  test::TempDir dir;
  auto index = make_index("hnsw:M=8,efc=40", 16);
  index->add(iota_ids(200), clustered_vectors(200, 16, 10, 0.5f, 1));
  const PatchableIndexFile file(*index, dir.file("i.idx"));
  // hnswlib's file: 96 bytes of fields (count at 16, label offset at 32, entry point at 52), then nodes.
  EXPECT_NE(file.patch(96 + 4, 0xFFFFFF00u, 4).find("corrupt hnsw graph (neighbour id)"), std::string::npos);
  EXPECT_NE(file.patch(16, uint64_t(1) << 40).find("corrupt hnsw graph (more elements than bytes)"), std::string::npos);
  EXPECT_EQ(file.patch(8, uint64_t(1) << 60), "");  // capacity: the file's count, not its max_elements
  EXPECT_NE(file.patch(32, 1u << 30).find("corrupt hnsw graph (element layout"), std::string::npos);
  EXPECT_NE(file.patch(52, 200, 4).find("corrupt hnsw graph (entry point"), std::string::npos);
  EXPECT_EQ(file.patch(96 + 4, 1, 4), "");  // another valid neighbour: loads and searches
}

// Found by fuzz/fuzz_index: FAISS allocates a vector length read from the file before reading the
// vector (up to 2^40 elements): a few kB behind a valid checksum asked for gigabytes, and an
// absurd length ended in std::bad_alloc instead of an error naming the file.
TEST(IndexFile, IvfPqSizesAreCheckedBeforeFaissAllocates) {
  test::TempDir dir;
  auto index = make_index("ivfpq:nlist=4,m=4,nbits=4,vectors=0", 8);
  index->add(iota_ids(100), clustered_vectors(100, 8, 4, 0.5f, 1));
  const PatchableIndexFile file(*index, dir.file("i.idx"));
  // faiss's file: "IwPQ", d, ntotal, ... (index header, 33 bytes), nlist, nprobe, "IxFI", index
  // header, then the length of the coarse centroids.
  const size_t centroids_length = 4 + 33 + 8 + 8 + 4 + 33;
  EXPECT_EQ(file.patch(centroids_length, 4 * 8), "");  // the true length: loads
  EXPECT_NE(file.patch(centroids_length, uint64_t(1) << 39).find("corrupt ivfpq data (coarse centroids)"),
            std::string::npos);
  EXPECT_NE(file.patch(4 + 4, uint64_t(1) << 50).find("corrupt ivfpq data (inverted list contents)"),
            std::string::npos);
  // Found by fuzz_index (UBSan: "load of value 50, which is not a valid value for type 'bool'"): the
  // is_trained byte at offset 32 of the index header went into a C++ bool.
  EXPECT_EQ(file.patch(32, 1, 1), "");  // its true value
  EXPECT_NE(file.patch(32, 50, 1).find("corrupt ivfpq data (is_trained flag)"), std::string::npos);
}

// Found by fuzz/fuzz_index: an index file's header names the spec and dimension the index is built
// with before its data is read; "ivfpq:nbits=16" at dimension 500000 asked FAISS for a 131 GB
// codebook (std::bad_alloc). Dimensions, list counts and codebooks are now bounded.
TEST(IndexFile, HeaderCannotAskForHugeAllocations) {
  test::TempDir dir;
  auto header_only = [&](const std::string& spec, int32_t dim) {
    BinaryWriter w;
    w.put_string("ivfpq");
    w.put_string(spec);
    w.put<int32_t>(dim);
    w.put<int64_t>(0);
    w.put_string(ids_checksum({}));
    w.put_string("");
    w.put<int64_t>(-1);
    w.put<int64_t>(-1);
    w.put_string("");
    w.put_array<int64_t>(nullptr, 0);
    BinaryWriter payload;
    payload.put<uint64_t>(w.bytes().size());
    std::string bytes = payload.take() + w.bytes();
    write_framed_file(dir.file("h.idx"), "FNDINDX1", 2, bytes);
    return error_of([&] { load_index(dir.file("h.idx")); });
  };
  EXPECT_NE(header_only("ivfpq:m=1,nbits=16,nlist=1,vectors=0", 500000).find("inconsistent index header (dim 500000"),
            std::string::npos);
  EXPECT_NE(header_only("ivfpq:m=1,nbits=16,nlist=1,vectors=0", 65536).find("exceeds 268435456 (1 GiB)"),
            std::string::npos);
  const std::string lists = header_only("ivfpq:m=1,nbits=4,nlist=100000000,vectors=0", 8);
  EXPECT_NE(lists.find("nlist must be <= 1048576"), std::string::npos) << lists;
  EXPECT_NE(error_of([] { make_index("ivfpq:m=8,nbits=16", 8192); }).find("8192 x 65536 floats"), std::string::npos);
  EXPECT_EQ(error_of([] { make_index("ivfpq:m=8,nbits=8", 2048); }), "");  // a real configuration
}

TEST(VectorIndex, ConcurrentSearchesWithAddsAndRemoves) {
  const int dim = 32;
  for (std::string spec : {"exact", "hnsw:M=12,efc=40,ef=32"}) {
    SCOPED_TRACE(spec);
    auto index = make_index(spec, dim);
    auto data = clustered_vectors(4000, dim, 40, 0.7f, 8);
    index->add(2000, iota_ids(2000).data(), data.data());
    auto queries = clustered_vectors(16, dim, 40, 0.7f, 9);
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t)
      readers.emplace_back([&, t] {  // t by value: the loop ends while the readers run (ASan)
        while (!stop) {
          SearchResult r = index->search(t % 2 ? 16 : 1, queries.data(), 5);
          for (int64_t id : r.ids)
            if (id < -1 || id >= 4000) bad++;
        }
      });
    // Writer: add the second half in batches, removing some of the first half meanwhile.
    for (int64_t b = 2000; b < 4000; b += 250) {
      auto ids = iota_ids(250, b);
      index->add(250, ids.data(), data.data() + b * dim);
      index->remove(iota_ids(50, b - 2000));
    }
    stop = true;
    for (auto& th : readers) th.join();
    EXPECT_EQ(bad, 0);
    EXPECT_EQ(index->size(), 4000 - 400);
  }
}
