// Index files (index/index_file.h) of every type: exact, HNSW (hnswlib's graph) and IVF-PQ
// (FAISS's serialisation). The first byte picks the mode: even = the bytes are the whole file
// (magic, length and CRC checks); odd = the rest is the payload of a correctly framed file, so that
// the header decoder and the native readers behind the checksum are reached. A loaded index is
// searched, so that a graph or list that loads but points outside itself is found too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/index/index_file.h"
#include "fuzz_support.h"

using namespace fundus;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string path = fuzz::temp_dir() + "/fuzz.fidx";
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) write_framed_file(path, "FNDINDX1", 2, rest);
  else fuzz::write_bytes(path, data + 1, size - 1);
  fuzz::expect_only_fundus_errors([&] { (void)read_index_info(path); });
  fuzz::expect_only_fundus_errors([&] {
    LoadedIndex loaded = load_index(path);
    const int dim = loaded.index->dim();
    if (dim > 4096) return;  // the query vector below would dominate the run time
    std::vector<float> query(size_t(dim), 0.0f);
    query[0] = 1.0f;
    (void)loaded.index->search(query, 5);
  });
  return 0;
}
