#include "fundus/core/grades.h"

namespace fundus {

const char* grade_name(int grade) {
  static const char* names[kNumGrades] = {"No DR", "Mild", "Moderate", "Severe", "PDR"};
  return grade >= 0 && grade < kNumGrades ? names[grade] : "invalid";
}

}  // namespace fundus
