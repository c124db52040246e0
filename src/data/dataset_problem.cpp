#include "fundus/data/dataset_problem.h"

#include "fundus/core/strings.h"

namespace fundus {

const char* problem_kind_name(ProblemKind kind) {
  switch (kind) {
    case ProblemKind::bad_field:
      return "bad_field";
    case ProblemKind::bad_grade:
      return "bad_grade";
    case ProblemKind::missing_image:
      return "missing_image";
    case ProblemKind::corrupt_image:
      return "corrupt_image";
    case ProblemKind::no_field_of_view:
      return "no_field_of_view";
    case ProblemKind::duplicate_id:
      return "duplicate_id";
    case ProblemKind::empty_dataset:
      return "empty_dataset";
  }
  return "unknown";
}

std::string DatasetProblem::to_string() const {
  // Messages quote fields of the input: escaped, so that a report cannot drive the terminal.
  return escape_control(line > 0 ? source + ":" + std::to_string(line) + ": " + message : source + ": " + message);
}

std::map<std::string, int> count_problem_kinds(const std::vector<DatasetProblem>& problems) {
  std::map<std::string, int> counts;
  for (const DatasetProblem& p : problems) ++counts[problem_kind_name(p.kind)];
  return counts;
}

Json problems_to_json(const std::vector<DatasetProblem>& problems) {
  Json out = Json::array();
  for (const DatasetProblem& p : problems)
    out.push_back({{"source", p.source},
                   {"line", p.line},
                   {"id", p.id},
                   {"kind", problem_kind_name(p.kind)},
                   {"message", p.message}});
  return out;
}

std::string format_problems(const std::vector<DatasetProblem>& problems, size_t max_lines) {
  std::string out;
  size_t shown = max_lines == 0 ? problems.size() : std::min(max_lines, problems.size());
  for (size_t i = 0; i < shown; ++i) out += problems[i].to_string() + "\n";
  if (shown < problems.size()) out += strprintf("... and %zu more problems\n", problems.size() - shown);
  return out;
}

}  // namespace fundus
