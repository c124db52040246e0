// NumPy .npy (format 1.0) for float32 / int64 matrices, so vectors can be read by np.load.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fundus {

/// Writes a C-order float32 array of `shape` atomically.
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape);

struct NpyArray {
  std::string dtype;  // "<f4", "<f8", "<i8", "<i4"
  std::vector<int64_t> shape;
  std::vector<char> bytes;              // raw little-endian data, C order
  std::vector<float> as_float() const;  // converts f4/f8/i4/i8 to float
};
NpyArray read_npy(const std::string& path);

}  // namespace fundus
