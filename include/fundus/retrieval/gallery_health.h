// The descriptor health of one model's vectors in a case store (eval/descriptor_health.h), as the
// store's per-model health record.
//
//   GalleryHealthOptions o;
//   o.threads = 2;
//   DescriptorHealth h = gallery_health(store, model_id, o);
//   if (h.flagged()) warn(h.advice());
//
// The record is read from the store when it is current (stored for the vectors as they are now:
// CaseStore::model_health); otherwise it is measured on at most `max_rows` evenly spaced vectors,
// streamed from the store (memory bounded at any store size), and stored for the next reader when
// `record` is set and the store is writable. `fundus embed` records it after every run; the search
// engine reads it at start-up. Thread safety: as CaseStore (one call at a time per store object).
#pragma once

#include <cstdint>

#include "fundus/eval/descriptor_health.h"

namespace fundus {

class CaseStore;

struct GalleryHealthOptions {
  int64_t max_rows = 20000;  // measured sample (evenly spaced over the vectors in case id order)
  int threads = 0;           // 0 = all cores
  bool record = true;        // store what was measured (ignored, with a warning, on a read-only store)
};

/// Throws fundus::Error for an unknown model. A model without vectors gives status "too_few".
DescriptorHealth gallery_health(CaseStore& store, int64_t model_id, const GalleryHealthOptions& options = {});

}  // namespace fundus
