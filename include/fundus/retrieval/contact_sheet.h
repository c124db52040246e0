// Contact sheets: a query image and its retrieved cases as one picture, each thumbnail framed in its
// grade's colour (grade_color, eval/report.h) with a two-line caption (e.g. "#1 Moderate" / "0.934
// Patient002_L"). Used by `fundus query --sheet`, the evaluation report and the server.
//
// Layout: tiles left to right, `columns` per row (the query first, framed white), rows as needed:
//   width  = gap + columns * (tile + gap),  height = gap + rows * (tile + caption_height + gap),
//   tile   = thumb + 2 * frame.
// Torch-free, pure (thread-safe). Throws fundus::Error for an empty or non-RGB tile image.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace fundus {

struct SheetTile {
  cv::Mat image;         // RGB CV_8UC3 (any size: fitted into the square thumbnail, aspect kept)
  std::string title;     // first caption line
  std::string subtitle;  // second caption line
  int grade = -1;        // frame colour; -1 = none (grey)
};

struct ContactSheetOptions {
  int thumb = 160;          // thumbnail side in pixels, 32..1024
  int columns = 6;          // tiles per row (including the query), >= 1
  int frame = 4;            // coloured frame width
  int gap = 8;              // space between tiles
  int caption_height = 34;  // two text lines under each tile
};

/// Size of the sheet for `tiles` tiles (query included).
cv::Size contact_sheet_size(int tiles, const ContactSheetOptions& options = {});

/// The sheet (RGB CV_8UC3): `query` first, then `hits` in order.
cv::Mat render_contact_sheet(const SheetTile& query, const std::vector<SheetTile>& hits,
                             const ContactSheetOptions& options = {});

}  // namespace fundus
