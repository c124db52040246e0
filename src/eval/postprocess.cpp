#include "fundus/eval/postprocess.h"

#include <algorithm>
#include <cmath>

#include <opencv2/core.hpp>

#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {

void normalise_rows(std::vector<float>& v, int64_t dim) {
  for (size_t r = 0; r * size_t(dim) < v.size(); ++r) {
    float* p = v.data() + r * size_t(dim);
    double n = 0;
    for (int64_t j = 0; j < dim; ++j) n += double(p[j]) * p[j];
    if (n <= 0) continue;
    const float inv = float(1.0 / std::sqrt(n));
    for (int64_t j = 0; j < dim; ++j) p[j] *= inv;
  }
}

// x_i <- normalise(x_i + sum_{top n} max(s, 0)^alpha * g_j) over the n best eligible gallery rows.
std::vector<float> expand(const std::vector<float>& rows, const std::vector<CaseKey>& keys,
                          const std::vector<float>& gallery, const std::vector<CaseKey>& gallery_keys, int64_t dim,
                          int n, double alpha, bool exclude_same_patient, int threads) {
  const int64_t count = int64_t(keys.size()), g = int64_t(gallery_keys.size());
  RankingOptions ro;
  ro.k_max = n;
  ro.exclude_same_patient = exclude_same_patient;
  ro.threads = threads;
  Ranking ranking = rank_queries({rows.data(), count, dim}, keys, {gallery.data(), g, dim}, gallery_keys, ro);
  std::vector<float> out = rows;
  for (int64_t q = 0; q < count; ++q)
    for (int64_t c = 0; c < ranking.k; ++c) {
      const int64_t j = ranking.index[size_t(q * ranking.k + c)];
      if (j < 0) break;
      const double w = std::pow(std::max(0.0f, ranking.score[size_t(q * ranking.k + c)]), alpha);
      for (int64_t d = 0; d < dim; ++d) out[size_t(q * dim + d)] += float(w) * gallery[size_t(j * dim + d)];
    }
  normalise_rows(out, dim);
  return out;
}

}  // namespace

std::string PostprocessSpec::to_string() const {
  if (is_identity()) return "none";
  std::vector<std::string> steps;
  if (whiten) steps.push_back(strprintf("pcaw:dims=%d,shrink=%g", whiten_dims, whiten_shrink));
  if (dba_n > 0) steps.push_back(strprintf("dba:n=%d,alpha=%g", dba_n, dba_alpha));
  if (aqe_n > 0) steps.push_back(strprintf("aqe:n=%d,alpha=%g", aqe_n, aqe_alpha));
  return join(steps, "+");
}

PostprocessSpec parse_postprocess(const std::string& text) {
  PostprocessSpec s;
  if (trim(text) == "none" || trim(text).empty()) return s;
  for (const std::string& step_text : split(text, '+')) {
    std::string step = trim(step_text), options;
    if (auto colon = step.find(':'); colon != std::string::npos) {
      options = step.substr(colon + 1);
      step = step.substr(0, colon);
    }
    if (step == "pcaw") s.whiten = true;
    else if (step == "dba") s.dba_n = 2;
    else if (step == "aqe") s.aqe_n = 2;
    else FUNDUS_THROW("post-processing '" << text << "': unknown step '" << step << "' (pcaw, dba, aqe, or none)");
    for (const std::string& kv : options.empty() ? std::vector<std::string>{} : split(options, ',')) {
      auto eq = kv.find('=');
      FUNDUS_CHECK(eq != std::string::npos, "post-processing '" << text << "': option '" << kv << "' is not key=value");
      const std::string key = trim(kv.substr(0, eq)), value = trim(kv.substr(eq + 1));
      double v = 0;
      FUNDUS_CHECK(try_parse_double(value, v) && std::isfinite(v), "post-processing '" << text << "': " << step << "."
                                                                                       << key << " = '" << value
                                                                                       << "' is not a number");
      auto whole = [&](int lo, int hi) {
        FUNDUS_CHECK(v == std::floor(v) && v >= lo && v <= hi, "post-processing '"
                                                                   << text << "': " << step << "." << key
                                                                   << " must be a whole number in " << lo << "-" << hi);
        return int(v);
      };
      auto positive = [&] {
        FUNDUS_CHECK(v >= 0 && v <= 100,
                     "post-processing '" << text << "': " << step << "." << key << " outside 0-100");
        return v;
      };
      if (step == "pcaw" && key == "dims") s.whiten_dims = whole(0, 1 << 16);
      else if (step == "pcaw" && key == "shrink") s.whiten_shrink = positive();
      else if (step == "dba" && key == "n") s.dba_n = whole(1, 1000);
      else if (step == "dba" && key == "alpha") s.dba_alpha = positive();
      else if (step == "aqe" && key == "n") s.aqe_n = whole(1, 1000);
      else if (step == "aqe" && key == "alpha") s.aqe_alpha = positive();
      else FUNDUS_THROW("post-processing '" << text << "': unknown option '" << key << "' for " << step);
    }
  }
  return s;
}

std::vector<float> Whitening::apply(const VectorsView& rows) const {
  FUNDUS_CHECK(rows.dim == dim,
               "whitening: vectors have " << rows.dim << " dims, the whitening was learned on " << dim);
  std::vector<float> out(size_t(rows.rows * out_dim));
  std::vector<float> centred(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows.rows; ++r) {
    for (int64_t j = 0; j < dim; ++j) centred[size_t(j)] = rows.row(r)[j] - mean[size_t(j)];
    for (int64_t o = 0; o < out_dim; ++o)
      out[size_t(r * out_dim + o)] = dot_product(&projection[size_t(o * dim)], centred.data(), dim);
  }
  normalise_rows(out, out_dim);
  return out;
}

Whitening learn_whitening(const VectorsView& gallery, int dims, double shrink) {
  FUNDUS_CHECK(gallery.rows >= 2, "whitening: needs at least 2 gallery vectors, got " << gallery.rows);
  check_finite_rows(gallery, "whitening gallery");
  cv::Mat data(int(gallery.rows), int(gallery.dim), CV_32F, const_cast<float*>(gallery.data));
  cv::Mat data64;
  data.convertTo(data64, CV_64F);
  const int max_dims = int(std::min<int64_t>(gallery.rows - 1, gallery.dim));
  const int keep = dims > 0 ? std::min(dims, max_dims) : max_dims;
  cv::PCA pca(data64, cv::noArray(), cv::PCA::DATA_AS_ROW, keep);
  Whitening w;
  w.dim = gallery.dim;
  w.mean.resize(size_t(gallery.dim));
  for (int64_t j = 0; j < gallery.dim; ++j) w.mean[size_t(j)] = float(pca.mean.at<double>(0, int(j)));
  // Drop directions the gallery does not span (numerically zero eigenvalues), then whiten with a
  // shrunk eigenvalue so that poorly estimated directions are not blown up.
  double total = 0;
  int used = 0;
  for (int i = 0; i < pca.eigenvalues.rows; ++i) {
    double e = pca.eigenvalues.at<double>(i);
    if (e <= 1e-12 * std::max(1e-30, pca.eigenvalues.at<double>(0))) break;
    total += e;
    ++used;
  }
  FUNDUS_CHECK(used > 0, "whitening: the gallery vectors are all identical (no direction to whiten)");
  const double floor = shrink * total / used;
  w.out_dim = used;
  w.projection.resize(size_t(used * gallery.dim));
  for (int i = 0; i < used; ++i) {
    const double scale = 1.0 / std::sqrt(pca.eigenvalues.at<double>(i) + floor);
    for (int64_t j = 0; j < gallery.dim; ++j)
      w.projection[size_t(i * gallery.dim + j)] = float(pca.eigenvectors.at<double>(i, int(j)) * scale);
  }
  return w;
}

void apply_postprocess(const PostprocessSpec& spec, std::vector<float>& queries, const std::vector<CaseKey>& query_keys,
                       std::vector<float>& gallery, const std::vector<CaseKey>& gallery_keys, int64_t& dim,
                       bool exclude_same_patient, int threads) {
  FUNDUS_CHECK(int64_t(queries.size()) == int64_t(query_keys.size()) * dim &&
                   int64_t(gallery.size()) == int64_t(gallery_keys.size()) * dim,
               "post-processing: vector and key counts disagree");
  if (spec.whiten) {
    Whitening w =
        learn_whitening({gallery.data(), int64_t(gallery_keys.size()), dim}, spec.whiten_dims, spec.whiten_shrink);
    queries = w.apply({queries.data(), int64_t(query_keys.size()), dim});
    gallery = w.apply({gallery.data(), int64_t(gallery_keys.size()), dim});
    dim = w.out_dim;
  }
  if (spec.dba_n > 0)
    // A gallery item is never its own neighbour (the ranker excludes equal case ids); it is the
    // "itself" term of the sum.
    gallery = expand(gallery, gallery_keys, gallery, gallery_keys, dim, spec.dba_n, spec.dba_alpha,
                     exclude_same_patient, threads);
  if (spec.aqe_n > 0)
    queries = expand(queries, query_keys, gallery, gallery_keys, dim, spec.aqe_n, spec.aqe_alpha, exclude_same_patient,
                     threads);
}

}  // namespace fundus
