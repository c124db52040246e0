// `fundus preprocess`: preprocess photographs (FOV crop, square, resize, optional Ben Graham) and write
// before/after images plus the FOV found, for inspection (see fundus/data/preprocess.h).
#include <iostream>
#include <memory>

#include "commands.h"
#include "fundus/core/error.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/preprocess.h"

namespace fundus::cli {

void add_image_commands(CLI::App& app) {
  struct Args {
    std::vector<std::string> images;
    std::string out, data;
    int size = 256, limit = 8, threads = 0;
    bool ben_graham = false, no_mask = false, json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "preprocess",
      "Preprocess fundus photographs for inspection: writes <name>_pre.png, <name>_compare.jpg (original with the "
      "field of view drawn | preprocessed) and fov.json");
  cmd->add_option("images", a->images, "Image files (JPEG, PNG, TIFF, BMP)");
  cmd->add_option("--out", a->out, "Output directory")->required();
  cmd->add_option("--size", a->size, "Output side in pixels")->capture_default_str();
  cmd->add_flag("--ben-graham", a->ben_graham, "Ben Graham contrast normalisation (4 I - 4 Gauss(I) + 128)");
  cmd->add_flag("--no-mask", a->no_mask, "Keep the pixels outside the field-of-view circle");
  cmd->add_option("--data", a->data, "Also take images from a dataset (labels CSV, manifest or folder)");
  cmd->add_option("--limit", a->limit, "With --data: the first N images (0 = all)")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the per-image JSON instead of the table");
  add_threads_option(*cmd, a->threads);
  cmd->callback([a] {
    PreprocessOptions o;
    o.size = a->size;
    o.ben_graham = a->ben_graham;
    o.mask = !a->no_mask;
    o.validate();
    std::vector<InspectionInput> inputs;
    for (const std::string& path : a->images) {
      std::string file = path.substr(path.find_last_of('/') + 1);
      inputs.push_back({file.substr(0, file.find_last_of('.')), path});
    }
    if (!a->data.empty()) {
      FUNDUS_CHECK(a->limit >= 0, "--limit: must be >= 0, got " << a->limit);
      LoadResult loaded = load_dataset(a->data);
      for (const CaseRecord& r : loaded.dataset.records) {
        if (a->limit > 0 && int64_t(inputs.size()) >= a->limit + int64_t(a->images.size())) break;
        inputs.push_back({r.id, r.image_path});
      }
    }
    FUNDUS_CHECK(!inputs.empty(), "preprocess: no images given (pass image files and/or --data)");
    Json images = write_preprocess_inspection(inputs, o, a->out, a->threads);
    if (a->json) std::cout << images.dump(2) << "\n";
    else std::cout << format_inspection_table(images) << "wrote " << a->out << "/fov.json\n";
    int failed = 0;
    for (const Json& row : images) failed += row.contains("error");
    FUNDUS_CHECK(failed == 0, failed << " of " << images.size() << " images could not be preprocessed (see above)");
  });
}

}  // namespace fundus::cli
