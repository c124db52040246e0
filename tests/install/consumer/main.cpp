// Uses a few public headers through the installed fundus::fundus target: a case store and the grade names.
#include <iostream>

#include "fundus/core/grades.h"
#include "fundus/store/case_store.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  fundus::CaseStore store(argv[1], fundus::StoreOptions{});
  std::cout << "cases " << store.stats().cases << ", grade 2 is " << fundus::grade_name(2) << "\n";
  return store.stats().cases == 0 ? 0 : 1;
}
