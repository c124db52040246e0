// The diabetic-retinopathy grade scale, shared by every component that handles cases (data, store,
// eval, index, retrieval, serve). Torch-free, no dependencies.
#pragma once

#include <array>

namespace fundus {

/// DR grades follow the International Clinical DR scale: 0 No DR, 1 Mild, 2 Moderate, 3 Severe NPDR,
/// 4 PDR. kNumGrades is the number of classes.
constexpr int kNumGrades = 5;

/// "No DR", "Mild", "Moderate", "Severe", "PDR"; "invalid" outside 0..kNumGrades-1.
const char* grade_name(int grade);

/// One value per grade, indexed by grade (votes, counts, per-grade metrics).
template <class T>
using PerGrade = std::array<T, kNumGrades>;

}  // namespace fundus
