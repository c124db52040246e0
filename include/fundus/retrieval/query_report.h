// Query results for people and machines: JSON, a readable table, a contact sheet. Shared by
// `fundus query` and the server. Torch-free, pure functions (thread-safe).
#pragma once

#include <string>

#include <opencv2/core.hpp>

#include "fundus/core/json.h"
#include "fundus/data/preprocess.h"
#include "fundus/retrieval/contact_sheet.h"
#include "fundus/retrieval/search_engine.h"

namespace fundus {

/// {"hits": [{rank, id, external_id, grade, grade_name, similarity, patient, eye, split, image_path,
///   meta}], "estimate": {grade, grade_name, confidence, votes: {"No DR": share, ...}}, "timing_ms": {...}}
Json query_result_to_json(const QueryResult& result);

/// Table (rank, id, grade (name), similarity, patient, eye, path) and the grade estimate line.
std::string format_query_result(const QueryResult& result);

/// Contact sheet: the query's preprocessed image, then each hit's image preprocessed with `preprocess`
/// (a hit whose file is gone shows a black tile captioned "image missing").
cv::Mat render_query_sheet(const QueryResult& result, const PreprocessOptions& preprocess,
                           const ContactSheetOptions& options = {});

}  // namespace fundus
