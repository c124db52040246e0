#include "fundus/retrieval/contact_sheet.h"

#include <algorithm>

#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/eval/report.h"

namespace fundus {

namespace {

void check_options(const ContactSheetOptions& o) {
  FUNDUS_CHECK(o.thumb >= 32 && o.thumb <= 1024, "contact sheet: thumb must be in 32..1024, got " << o.thumb);
  FUNDUS_CHECK(o.columns >= 1, "contact sheet: columns must be >= 1, got " << o.columns);
  FUNDUS_CHECK(o.frame >= 0 && o.gap >= 0 && o.caption_height >= 0,
               "contact sheet: negative frame, gap or caption height");
}

// Text shortened with "..." until it fits `width` pixels.
std::string fit_text(std::string text, int width, double scale) {
  int baseline = 0;
  auto fits = [&](const std::string& t) {
    return cv::getTextSize(t, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline).width <= width;
  };
  if (fits(text)) return text;
  while (!text.empty() && !fits(text + "...")) text.pop_back();
  return text + "...";
}

void draw_tile(cv::Mat& sheet, cv::Point origin, const SheetTile& tile, const cv::Scalar& frame_color,
               const ContactSheetOptions& o) {
  FUNDUS_CHECK(!tile.image.empty() && tile.image.type() == CV_8UC3,
               "contact sheet: tile '" << tile.title << "' needs an RGB CV_8UC3 image");
  const int side = o.thumb + 2 * o.frame;
  cv::rectangle(sheet, cv::Rect(origin.x, origin.y, side, side), frame_color, cv::FILLED);
  cv::Mat inner = sheet(cv::Rect(origin.x + o.frame, origin.y + o.frame, o.thumb, o.thumb));
  inner.setTo(cv::Scalar::all(0));
  const double scale = double(o.thumb) / std::max(tile.image.cols, tile.image.rows);
  const int w = std::max(1, int(tile.image.cols * scale)), h = std::max(1, int(tile.image.rows * scale));
  cv::Mat thumb;
  cv::resize(tile.image, thumb, cv::Size(w, h), 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  thumb.copyTo(inner(cv::Rect((o.thumb - w) / 2, (o.thumb - h) / 2, w, h)));
  if (o.caption_height < 10) return;
  const double font = 0.42;
  const cv::Scalar text_color(235, 235, 235);
  cv::putText(sheet, fit_text(tile.title, side, font), cv::Point(origin.x, origin.y + side + 14),
              cv::FONT_HERSHEY_SIMPLEX, font, frame_color, 1, cv::LINE_AA);
  if (o.caption_height >= 26)
    cv::putText(sheet, fit_text(tile.subtitle, side, font), cv::Point(origin.x, origin.y + side + 29),
                cv::FONT_HERSHEY_SIMPLEX, font, text_color, 1, cv::LINE_AA);
}

}  // namespace

cv::Size contact_sheet_size(int tiles, const ContactSheetOptions& o) {
  check_options(o);
  FUNDUS_CHECK(tiles >= 1, "contact sheet: needs at least one tile");
  const int columns = std::min(o.columns, tiles), rows = (tiles + o.columns - 1) / o.columns;
  const int side = o.thumb + 2 * o.frame;
  return {o.gap + columns * (side + o.gap), o.gap + rows * (side + o.caption_height + o.gap)};
}

cv::Mat render_contact_sheet(const SheetTile& query, const std::vector<SheetTile>& hits, const ContactSheetOptions& o) {
  const int tiles = int(hits.size()) + 1;
  cv::Mat sheet(contact_sheet_size(tiles, o), CV_8UC3, cv::Scalar(40, 40, 40));
  const int side = o.thumb + 2 * o.frame;
  auto origin = [&](int i) {
    return cv::Point(o.gap + (i % o.columns) * (side + o.gap),
                     o.gap + (i / o.columns) * (side + o.caption_height + o.gap));
  };
  draw_tile(sheet, origin(0), query, cv::Scalar(255, 255, 255), o);
  for (int i = 0; i < int(hits.size()); ++i) {
    auto c = grade_color(hits[size_t(i)].grade);
    draw_tile(sheet, origin(i + 1), hits[size_t(i)], cv::Scalar(c[0], c[1], c[2]), o);
  }
  return sheet;
}

}  // namespace fundus
