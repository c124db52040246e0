#include "fundus/index/vector_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ostream>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/index/index_file.h"

namespace fundus {

namespace {
constexpr char kMagic[] = "FNDVECS1";
constexpr uint32_t kVersion = 1;
constexpr uint64_t kFrameHeader = 24;  // magic, version, reserved, payload size (core/io.h)
constexpr uint64_t kAlign = 64;        // rows start on a cache line

uint64_t padding_after(uint64_t file_offset) { return (kAlign - file_offset % kAlign) % kAlign; }
}  // namespace

void VectorFile::write(const std::string& path, int dim, const std::vector<int64_t>& ids,
                       const std::function<const float*(size_t)>& row, const std::string& tag) {
  FUNDUS_CHECK(dim > 0, path << ": vector file dimension must be > 0");
  for (size_t i = 1; i < ids.size(); ++i)
    FUNDUS_CHECK(ids[i - 1] < ids[i], path << ": vector file ids must be ascending and unique");
  BinaryWriter w;
  w.put<int32_t>(dim);
  w.put<int64_t>(int64_t(ids.size()));
  w.put_string(ids_checksum(ids));
  w.put_string(tag);
  const std::string header = w.take();
  write_framed_file(path, kMagic, kVersion, [&](std::ostream& out) {
    const uint64_t header_size = header.size();
    out.write(reinterpret_cast<const char*>(&header_size), sizeof header_size);
    out.write(header.data(), std::streamsize(header.size()));
    const std::string pad(padding_after(kFrameHeader + sizeof header_size + header_size), '\0');
    out.write(pad.data(), std::streamsize(pad.size()));
    out.write(reinterpret_cast<const char*>(ids.data()), std::streamsize(ids.size() * sizeof(int64_t)));
    const std::streamsize row_bytes = std::streamsize(size_t(dim) * sizeof(float));
    for (size_t i = 0; i < ids.size(); ++i) {
      const float* v = row(i);
      FUNDUS_CHECK(v, path << ": no vector for id " << ids[i]);
      out.write(reinterpret_cast<const char*>(v), row_bytes);
    }
  });
}

std::unique_ptr<VectorFile> VectorFile::open(const std::string& path, bool verify) {
  FUNDUS_CHECK(file_exists(path), path << ": vector file not found");
  FramedInfo frame;
  if (verify) {
    frame = verify_framed_file(path, kMagic, kVersion, "vector file");
  } else {
    frame.payload_offset = kFrameHeader;
  }
  std::unique_ptr<VectorFile> f(new VectorFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FUNDUS_CHECK(fd >= 0, path << ": cannot open vector file");
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  f->map_size_ = stat_ok ? size_t(st.st_size) : 0;
  if (f->map_size_ > 0) f->map_ = ::mmap(nullptr, f->map_size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (f->map_ == MAP_FAILED) f->map_ = nullptr;
  FUNDUS_CHECK(stat_ok && f->map_, path << ": cannot map vector file (" << f->map_size_ << " bytes)");
  ::madvise(f->map_, f->map_size_, MADV_RANDOM);  // re-ranking reads scattered rows

  const char* base = static_cast<const char*>(f->map_);
  const uint64_t size = f->map_size_;
  FUNDUS_CHECK(size >= kFrameHeader + 8 && std::memcmp(base, kMagic, 8) == 0,
               path << ": not a vector file (bad magic or too short)");
  uint64_t payload_size = 0, header_size = 0;
  std::memcpy(&payload_size, base + 16, 8);
  FUNDUS_CHECK(payload_size <= size && payload_size >= 8, path << ": vector file is truncated");
  std::memcpy(&header_size, base + frame.payload_offset, 8);
  const uint64_t header_at = frame.payload_offset + 8;
  FUNDUS_CHECK(header_size <= payload_size - 8, path << ": corrupt vector file header size");
  BinaryReader r(std::string_view(base + header_at, header_size), path);
  f->dim_ = r.get<int32_t>();
  f->count_ = r.get<int64_t>();
  f->ids_sha256_ = r.get_string();
  f->tag_ = r.get_string();
  FUNDUS_CHECK(r.at_end() && f->dim_ > 0 && f->dim_ <= (1 << 20) && f->count_ >= 0 && f->count_ < (int64_t(1) << 40),
               path << ": corrupt vector file header");
  const uint64_t ids_at = header_at + header_size + padding_after(header_at + header_size);
  const uint64_t rows_at = ids_at + uint64_t(f->count_) * 8;
  const uint64_t end = rows_at + uint64_t(f->count_) * uint64_t(f->dim_) * 4;
  FUNDUS_CHECK(end == frame.payload_offset + payload_size && end + 12 == size,
               path << ": vector file size does not match its header (" << f->count_ << " x " << f->dim_ << ")");
  f->ids_ = reinterpret_cast<const int64_t*>(base + ids_at);
  f->rows_ = reinterpret_cast<const float*>(base + rows_at);
  for (int64_t i = 1; i < f->count_; ++i)
    FUNDUS_CHECK(f->ids_[i - 1] < f->ids_[i], path << ": vector file ids are not ascending at row " << i);
  return f;
}

VectorFile::~VectorFile() {
  if (map_) ::munmap(map_, map_size_);
}

const float* VectorFile::find(int64_t id) const {
  const int64_t* end = ids_ + count_;
  const int64_t* it = std::lower_bound(ids_, end, id);
  return it != end && *it == id ? row(it - ids_) : nullptr;
}

}  // namespace fundus
