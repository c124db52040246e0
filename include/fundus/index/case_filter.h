// What search filters need to know about each indexed case (grade, patient), kept in memory beside
// the vector index so that a filtered query never reads the store, and the filter over it that the
// indexes apply during the search (IdFilter, vector_index.h).
//
// Memory: 5 bytes per id up to the largest id (dense arrays: store ids are dense), 8 bytes per case
// in per-grade id lists, and ~150 bytes per distinct patient (name, code, its cases): 90 MB for a
// million cases of 500,000 patients (measured, docs/bench-index.md), 2% of a 1M HNSW index.
// Thread safety: none inside. The owner serialises set()/remove() with the filters in use
// (SearchEngine holds its state lock exclusively for writes, shared for queries).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "fundus/core/grades.h"
#include "fundus/index/vector_index.h"

namespace fundus {

class CaseAttributes {
 public:
  /// Largest id accepted (the arrays are indexed by id).
  static constexpr int64_t kMaxId = (int64_t(1) << 32) - 1;

  /// Adds or replaces the attributes of `id` (0..kMaxId); grade 0..4; patient "" = unknown (the
  /// case is then its own patient and never excluded). Throws fundus::Error for bad values.
  void set(int64_t id, int grade, const std::string& patient);
  /// Forgets `id` (unknown ids are ignored).
  void remove(int64_t id);
  int64_t size() const { return size_; }
  /// Grade of `id`, -1 when unknown.
  int grade(int64_t id) const;
  /// Approximate bytes held.
  int64_t memory_bytes() const;

 private:
  friend class CaseFilter;
  static constexpr uint8_t kAbsent = 0xFF;
  std::vector<uint8_t> grade_;                 // by id; kAbsent = not a case
  std::vector<uint32_t> patient_;              // by id; 0 = no patient
  std::vector<int64_t> by_grade_[kNumGrades];  // ids of each grade, ascending
  std::unordered_map<std::string, uint32_t> patient_code_;
  std::unordered_map<uint32_t, std::vector<int64_t>> cases_of_patient_;
  int64_t size_ = 0;
};

/// Keeps the cases of `attributes` whose grade is in `grades` (empty = any grade) and whose
/// patient is not `exclude_patient` ("" = exclude nobody). keep() is two array lookups; count() is
/// exact and cheap; list() is proportional to the kept cases. `attributes` must outlive the filter
/// and not change while it is in use.
class CaseFilter : public IdFilter {
 public:
  /// Throws fundus::Error for a grade outside 0..4.
  CaseFilter(const CaseAttributes& attributes, const std::vector<int>& grades, const std::string& exclude_patient);
  bool keep(int64_t id) const override;
  int64_t count() const override;
  bool list(std::vector<int64_t>& out) const override;

 private:
  const CaseAttributes& a_;
  unsigned mask_ = 0;      // bit g set: grade g kept
  uint32_t excluded_ = 0;  // patient code, 0 = none
};

}  // namespace fundus
