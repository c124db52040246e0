#include "fundus/core/npy.h"

#include <cstring>
#include <sstream>

#include "fundus/core/error.h"
#include "fundus/core/io.h"

namespace fundus {

namespace {
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::ostringstream dict;
  dict << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) dict << shape[i] << (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
  dict << "), }";
  std::string h = dict.str();
  size_t total = 10 + h.size() + 1;
  h += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  uint16_t len = uint16_t(h.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  return out + h;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

template <typename T>
void write_typed(const std::string& path, const T* data, const std::vector<int64_t>& shape, const char* descr) {
  std::string header = npy_header(descr, shape);
  write_file_atomic(path, [&](std::ostream& out) {
    out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(data), std::streamsize(numel(shape) * int64_t(sizeof(T))));
  });
}
}  // namespace

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_typed(path, data, shape, "<f4");
}
void write_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape) {
  write_typed(path, data, shape, "<i8");
}

NpyArray read_npy(const std::string& path) {
  std::string bytes = read_file(path);
  FUNDUS_CHECK(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0, path << ": not a .npy file");
  int major = bytes[6];
  size_t header_len, offset;
  if (major == 1) {
    uint16_t l;
    std::memcpy(&l, bytes.data() + 8, 2);
    header_len = l;
    offset = 10;
  } else {
    FUNDUS_CHECK(bytes.size() >= 12, path << ": truncated .npy header");
    uint32_t l;
    std::memcpy(&l, bytes.data() + 8, 4);
    header_len = l;
    offset = 12;
  }
  FUNDUS_CHECK(offset + header_len <= bytes.size(), path << ": truncated .npy header");
  std::string h = bytes.substr(offset, header_len);
  NpyArray a;
  auto d = h.find("'descr':");
  FUNDUS_CHECK(d != std::string::npos, path << ": .npy header has no descr");
  auto q1 = h.find('\'', d + 8), q2 = h.find('\'', q1 + 1);
  a.dtype = h.substr(q1 + 1, q2 - q1 - 1);
  FUNDUS_CHECK(h.find("'fortran_order': False") != std::string::npos, path << ": Fortran-order .npy not supported");
  auto s1 = h.find('(', h.find("'shape':")), s2 = h.find(')', s1);
  std::stringstream shape(h.substr(s1 + 1, s2 - s1 - 1));
  std::string item;
  while (std::getline(shape, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    a.shape.push_back(std::stoll(item));
  }
  size_t elem = a.dtype == "<f4" || a.dtype == "<i4" ? 4 : a.dtype == "<f8" || a.dtype == "<i8" ? 8 : 0;
  FUNDUS_CHECK(elem > 0, path << ": unsupported .npy dtype " << a.dtype);
  size_t need = size_t(numel(a.shape)) * elem;
  size_t data_off = offset + header_len;
  FUNDUS_CHECK(bytes.size() - data_off == need,
               path << ": .npy data size " << bytes.size() - data_off << " does not match shape (" << need << ")");
  a.bytes.assign(bytes.begin() + long(data_off), bytes.end());
  return a;
}

std::vector<float> NpyArray::as_float() const {
  size_t n = 1;
  for (auto d : shape) n *= size_t(d);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == "<f4") {
      std::memcpy(&out[i], bytes.data() + 4 * i, 4);
    } else if (dtype == "<f8") {
      double v;
      std::memcpy(&v, bytes.data() + 8 * i, 8);
      out[i] = float(v);
    } else if (dtype == "<i4") {
      int32_t v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      out[i] = float(v);
    } else {
      int64_t v;
      std::memcpy(&v, bytes.data() + 8 * i, 8);
      out[i] = float(v);
    }
  }
  return out;
}

}  // namespace fundus
