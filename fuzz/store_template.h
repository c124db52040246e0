// The healthy store that fuzz_store edits and that seeds its corpus: 3 cases (grades 0-2, one
// patient with both eyes), 2 models (dims 4 and 2) and their vectors, with meta and config JSON.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/store/case_store.h"

namespace fundus::fuzz {

/// Creates the store at `path` (which must not exist) and returns the bytes of the closed file.
inline std::string make_store_template(const std::string& path) {
  {
    CaseStore store(path);
    std::vector<int64_t> ids;
    for (int i = 0; i < 3; ++i) {
      CaseRecord r;
      r.id = "case" + std::to_string(i);
      r.image_path = "/img/" + r.id + ".jpg";
      r.grade = i;
      r.patient = i < 2 ? "p1" : "";
      r.eye = i == 0 ? "L" : "R";
      r.split = "train";
      ids.push_back(store.add_case(r, R"({"site":"a","n":[1,2]})", std::string(64, char('a' + i))));
    }
    int64_t m1 = store.register_model("m1", R"({"dim":4})", std::string(64, 'c'), R"({"size":224})", 4);
    int64_t m2 = store.register_model("m2", "{}", std::string(64, 'd'), "{}", 2);
    std::vector<float> v4 = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    store.put_embeddings(m1, ids, v4.data(), 4);
    std::vector<float> v2 = {0.6f, 0.8f};
    store.put_embeddings(m2, {ids[0]}, v2.data(), 2);
  }  // closing the last connection checkpoints the WAL into the file
  return read_file(path);
}

}  // namespace fundus::fuzz
