#include "fundus/eval/descriptor_health.h"

#include <algorithm>
#include <cmath>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

std::string DescriptorHealth::summary() const {
  std::string s = strprintf("%lld descriptors of %lld dims: mean cosine %.4f, spread %.3g (relative %.3f)",
                            (long long)rows, (long long)dim, mean_cosine, dim_spread, relative_spread);
  if (nn_sample > 0) s += strprintf(", nearest-neighbour similarity p05 %.3f / median %.3f", nn_p05, nn_p50);
  return s + ": " + status;
}

std::string DescriptorHealth::advice() const {
  if (status == "collapsed")
    return "the model maps every image to (almost) the same descriptor: similarities, rankings and grade "
           "estimates are meaningless. Retrain (or recalibrate BatchNorm statistics) before using it.";
  if (status == "degenerate")
    return "the descriptors are nearly identical for all images: rankings are dominated by noise. Check the "
           "training run (loss near its label-blind value?) before trusting results.";
  return "";
}

Json DescriptorHealth::to_json() const {
  return {{"rows", rows},
          {"dim", dim},
          {"mean_cosine", mean_cosine},
          {"dim_spread", dim_spread},
          {"relative_spread", relative_spread},
          {"nn_sample", nn_sample},
          {"nn_p01", nn_p01},
          {"nn_p05", nn_p05},
          {"nn_p50", nn_p50},
          {"nn_duplicate_share", nn_duplicate_share},
          {"status", status}};
}

DescriptorHealth DescriptorHealth::from_json(const Json& j) {
  DescriptorHealth h;
  try {
    h.rows = j.at("rows");
    h.dim = j.at("dim");
    h.mean_cosine = j.at("mean_cosine");
    h.dim_spread = j.at("dim_spread");
    h.relative_spread = j.at("relative_spread");
    h.nn_sample = j.at("nn_sample");
    h.nn_p01 = j.at("nn_p01");
    h.nn_p05 = j.at("nn_p05");
    h.nn_p50 = j.at("nn_p50");
    h.nn_duplicate_share = j.at("nn_duplicate_share");
    h.status = j.at("status");
  } catch (const Json::exception& e) {
    FUNDUS_THROW("descriptor health record: " << e.what());
  }
  return h;
}

DescriptorHealth assess_descriptors(const float* rows, int64_t n, int64_t dim, const HealthOptions& options) {
  FUNDUS_CHECK(dim >= 1, "descriptor health: dimension " << dim << " < 1");
  DescriptorHealth h;
  h.rows = n;
  h.dim = dim;
  if (n < 3) return h;
  // Statistics of the unit rows, accumulated in double: they must resolve differences of 1e-7
  // between near-identical rows. Rows are normalised on the fly (no copy: stores can be large).
  std::vector<double> inv_norm(static_cast<size_t>(n));
  std::vector<double> sum(size_t(dim), 0.0), sq(size_t(dim), 0.0);
  double self = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* r = rows + i * dim;
    double norm = 0;
    for (int64_t j = 0; j < dim; ++j) {
      FUNDUS_CHECK(std::isfinite(r[j]), "descriptor health: row " << i << " has a non-finite value at " << j);
      norm += double(r[j]) * r[j];
    }
    inv_norm[size_t(i)] = norm > 0 ? 1.0 / std::sqrt(norm) : 0.0;
    for (int64_t j = 0; j < dim; ++j) {
      double v = r[j] * inv_norm[size_t(i)];
      sum[size_t(j)] += v;
      sq[size_t(j)] += v * v;
      self += v * v;
    }
  }
  double total = 0, spread = 0;
  for (int64_t j = 0; j < dim; ++j) {
    total += sum[size_t(j)] * sum[size_t(j)];
    double mean = sum[size_t(j)] / double(n);
    spread += std::sqrt(std::max(0.0, sq[size_t(j)] / double(n) - mean * mean));
  }
  h.mean_cosine = (total - self) / (double(n) * double(n - 1));
  h.dim_spread = spread / double(dim);
  h.relative_spread = h.dim_spread * std::sqrt(double(dim));

  // Nearest neighbours of evenly spaced sample rows, within a work budget (large stores measure
  // fewer rows; callers with an index can do better).
  const double budget = 4e9;
  int64_t sample = std::min(options.nn_sample, n);
  sample = std::min<int64_t>(sample, int64_t(budget / (double(n) * double(dim))));
  if (sample >= 8) {
    std::vector<double> best(size_t(sample), -2.0);
    parallel_for(sample, options.threads > 0 ? options.threads : available_cores(), [&](int64_t b, int64_t e) {
      for (int64_t s = b; s < e; ++s) {
        const int64_t i = s * n / sample;
        const float* q = rows + i * dim;
        double m = -2.0;
        for (int64_t k = 0; k < n; ++k) {
          if (k == i) continue;
          const float* r = rows + k * dim;
          double dot = 0;
          for (int64_t j = 0; j < dim; ++j) dot += double(q[j]) * r[j];
          m = std::max(m, dot * inv_norm[size_t(i)] * inv_norm[size_t(k)]);
        }
        best[size_t(s)] = m;
      }
    });
    std::sort(best.begin(), best.end());
    auto pct = [&](double p) { return best[size_t(std::floor(p * double(sample - 1)))]; };
    h.nn_sample = sample;
    h.nn_p01 = pct(0.01);
    h.nn_p05 = pct(0.05);
    h.nn_p50 = pct(0.5);
    h.nn_duplicate_share =
        double(std::count_if(best.begin(), best.end(), [](double v) { return v >= 0.999999; })) / double(sample);
  }
  if (h.mean_cosine >= 0.9999 || h.relative_spread < 1e-3) h.status = "collapsed";
  else if (h.mean_cosine >= 0.98 || h.relative_spread < 0.05) h.status = "degenerate";
  else h.status = "ok";
  return h;
}

}  // namespace fundus
