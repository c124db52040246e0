#include "fundus/retrieval/gallery_health.h"

#include <vector>

#include "fundus/core/error.h"
#include "fundus/core/log.h"
#include "fundus/store/case_store.h"

namespace fundus {

DescriptorHealth gallery_health(CaseStore& store, int64_t model_id, const GalleryHealthOptions& o) {
  FUNDUS_CHECK(o.max_rows >= 3, "gallery health: max_rows must be >= 3, got " << o.max_rows);
  // The token is read before the vectors: a write in between draws a new one, so the record stored
  // below can only be taken as current for exactly the vectors measured.
  const std::string token = store.embeddings_token(model_id);
  const std::string stored = store.model_health(model_id);
  if (!stored.empty()) {
    try {
      return DescriptorHealth::from_json(
          parse_json(stored, store.path() + ": health record of model " + std::to_string(model_id)));
    } catch (const Error& e) {
      FUNDUS_WARN(e.message() << "; measuring again");
    }
  }

  const int64_t n = int64_t(store.embedding_ids(model_id).size());
  const int64_t take = std::min(n, o.max_rows);
  std::vector<float> sample;
  int64_t dim = 0, row = 0, picked = 0;
  store.scan_embeddings(model_id, 4096, [&](const EmbeddingMatrix& m) {
    dim = m.dim;
    for (int64_t i = 0; i < m.rows(); ++i, ++row) {
      if (picked >= take || row != picked * n / take) continue;  // rows floor(j n / take), j = 0..take-1
      sample.insert(sample.end(), m.row(i), m.row(i) + m.dim);
      ++picked;
    }
  });
  HealthOptions ho;
  ho.threads = o.threads;
  DescriptorHealth h = picked > 0 ? assess_descriptors(sample.data(), picked, dim, ho) : DescriptorHealth{};
  if (o.record && !token.empty()) {
    try {
      store.put_model_health(model_id, token, h.to_json().dump());
    } catch (const Error& e) {
      FUNDUS_WARN(store.path() << ": the descriptor health of model " << model_id << " was not recorded ("
                               << e.message() << ")");
    }
  }
  return h;
}

}  // namespace fundus
