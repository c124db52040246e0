#include "fundus/index/case_filter.h"

#include <algorithm>

#include "fundus/core/error.h"

namespace fundus {

void CaseAttributes::set(int64_t id, int grade, const std::string& patient) {
  FUNDUS_CHECK(id >= 0 && id <= kMaxId, "case attributes: id " << id << " outside 0.." << kMaxId);
  FUNDUS_CHECK(grade >= 0 && grade < kNumGrades, "case attributes: case " << id << " has grade " << grade);
  remove(id);
  if (size_t(id) >= grade_.size()) {
    const size_t n = std::max(size_t(id) + 1, grade_.size() + grade_.size() / 2);
    grade_.resize(n, kAbsent);
    patient_.resize(n, 0);
  }
  uint32_t code = 0;
  if (!patient.empty()) {
    auto it = patient_code_.emplace(patient, uint32_t(patient_code_.size() + 1)).first;
    code = it->second;
    cases_of_patient_[code].push_back(id);
  }
  grade_[size_t(id)] = uint8_t(grade);
  patient_[size_t(id)] = code;
  auto& ids = by_grade_[grade];
  if (ids.empty() || ids.back() < id) ids.push_back(id);  // the usual case: ids grow
  else ids.insert(std::lower_bound(ids.begin(), ids.end(), id), id);
  ++size_;
}

void CaseAttributes::remove(int64_t id) {
  if (id < 0 || size_t(id) >= grade_.size() || grade_[size_t(id)] == kAbsent) return;
  auto& ids = by_grade_[grade_[size_t(id)]];
  ids.erase(std::lower_bound(ids.begin(), ids.end(), id));
  if (uint32_t code = patient_[size_t(id)]) {
    auto it = cases_of_patient_.find(code);
    auto& cases = it->second;
    cases.erase(std::find(cases.begin(), cases.end(), id));
    if (cases.empty()) cases_of_patient_.erase(it);
  }
  grade_[size_t(id)] = kAbsent;
  patient_[size_t(id)] = 0;
  --size_;
}

int CaseAttributes::grade(int64_t id) const {
  if (id < 0 || size_t(id) >= grade_.size() || grade_[size_t(id)] == kAbsent) return -1;
  return grade_[size_t(id)];
}

int64_t CaseAttributes::memory_bytes() const {
  int64_t bytes = int64_t(grade_.capacity()) * 5;
  for (auto& ids : by_grade_) bytes += int64_t(ids.capacity()) * 8;
  for (auto& [name, code] : patient_code_) bytes += 64 + int64_t(name.capacity());
  bytes += int64_t(cases_of_patient_.size()) * 64;
  return bytes;
}

CaseFilter::CaseFilter(const CaseAttributes& attributes, const std::vector<int>& grades,
                       const std::string& exclude_patient)
    : a_(attributes) {
  for (int g : grades) {
    FUNDUS_CHECK(g >= 0 && g < kNumGrades, "grade filter " << g << " outside 0-" << kNumGrades - 1);
    mask_ |= 1u << g;
  }
  if (grades.empty()) mask_ = (1u << kNumGrades) - 1;
  if (!exclude_patient.empty()) {
    auto it = a_.patient_code_.find(exclude_patient);
    if (it != a_.patient_code_.end()) excluded_ = it->second;
  }
}

bool CaseFilter::keep(int64_t id) const {
  if (id < 0 || size_t(id) >= a_.grade_.size()) return false;
  const uint8_t g = a_.grade_[size_t(id)];
  return g != CaseAttributes::kAbsent && ((mask_ >> g) & 1u) &&
         (excluded_ == 0 || a_.patient_[size_t(id)] != excluded_);
}

int64_t CaseFilter::count() const {
  int64_t n = 0;
  for (int g = 0; g < kNumGrades; ++g)
    if ((mask_ >> g) & 1u) n += int64_t(a_.by_grade_[g].size());
  if (excluded_) {
    auto it = a_.cases_of_patient_.find(excluded_);
    if (it != a_.cases_of_patient_.end())
      for (int64_t id : it->second) n -= (mask_ >> a_.grade_[size_t(id)]) & 1u;
  }
  return n;
}

bool CaseFilter::list(std::vector<int64_t>& out) const {
  const size_t first = out.size();
  int grades = 0;
  for (int g = 0; g < kNumGrades; ++g) {
    if (!((mask_ >> g) & 1u)) continue;
    const auto& ids = a_.by_grade_[g];
    const size_t before = out.size();
    for (int64_t id : ids)
      if (excluded_ == 0 || a_.patient_[size_t(id)] != excluded_) out.push_back(id);
    if (grades++ > 0) std::inplace_merge(out.begin() + long(first), out.begin() + long(before), out.end());
  }
  return true;
}

}  // namespace fundus
