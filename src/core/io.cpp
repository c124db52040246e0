#include "fundus/core/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <streambuf>

#include "fundus/core/hash.h"

namespace fundus {

namespace {
constexpr char kEndMarker[9] = "FNDS-END";
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8;
constexpr size_t kTrailerSize = 4 + 8;

std::string errno_text() { return std::strerror(errno); }

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.empty() ? "." : path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort for directories on filesystems that refuse it
  ::fsync(fd);
  ::close(fd);
}

// Forwards to another streambuf while computing the CRC-32 and byte count of what passes through.
class CrcForwardingBuf : public std::streambuf {
 public:
  explicit CrcForwardingBuf(std::streambuf* sink) : sink_(sink) {}
  uint32_t crc() const { return crc_; }
  uint64_t count() const { return count_; }

 protected:
  int_type overflow(int_type ch) override {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    char c = traits_type::to_char_type(ch);
    return xsputn(&c, 1) == 1 ? ch : traits_type::eof();
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    crc_ = crc32(s, size_t(n), crc_);
    count_ += uint64_t(n);
    return sink_->sputn(s, n);
  }

 private:
  std::streambuf* sink_;
  uint32_t crc_ = 0;
  uint64_t count_ = 0;
};

void check_magic(std::string_view magic) {
  FUNDUS_CHECK(magic.size() == 8, "framed-file magic must be 8 characters, got '" << magic << "'");
}
}  // namespace

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FUNDUS_CHECK(in, path << ": cannot open for reading (" << errno_text() << ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  FUNDUS_CHECK(!in.bad(), path << ": read error");
  return ss.str();
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& dir) {
  if (dir.empty()) return;
  std::string partial;
  std::istringstream parts(dir);
  if (dir[0] == '/') partial = "/";
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    partial += part;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      FUNDUS_THROW(partial << ": cannot create directory (" << errno_text() << ")");
    partial += "/";
  }
  struct stat st;
  FUNDUS_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), dir << ": not a directory");
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty() || (!name.empty() && name[0] == '/')) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++) + "." +
         std::to_string(uint64_t(now) % 1000000007ULL);
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  std::string tmp = temp_path_for(path);
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      FUNDUS_CHECK(out, tmp << ": cannot create (" << errno_text() << ")");
      write(out);
      out.flush();
      FUNDUS_CHECK(out, path << ": write failed (disk full?)");
    }
    fsync_path(tmp, false);
    FUNDUS_CHECK(::rename(tmp.c_str(), path.c_str()) == 0,
                 path << ": cannot rename temporary file into place (" << errno_text() << ")");
    fsync_path(parent_dir(path), true);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, [&](std::ostream& out) { out.write(bytes.data(), std::streamsize(bytes.size())); });
}

void write_framed_file(const std::string& path, std::string_view magic, uint32_t version,
                       const std::function<void(std::ostream&)>& write_payload) {
  check_magic(magic);
  write_file_atomic(path, [&](std::ostream& out) {
    uint32_t reserved = 0;
    uint64_t size_placeholder = 0;
    out.write(magic.data(), 8);
    out.write(reinterpret_cast<const char*>(&version), 4);
    out.write(reinterpret_cast<const char*>(&reserved), 4);
    auto size_pos = out.tellp();
    out.write(reinterpret_cast<const char*>(&size_placeholder), 8);
    CrcForwardingBuf crcbuf(out.rdbuf());
    std::ostream payload(&crcbuf);
    write_payload(payload);
    payload.flush();
    FUNDUS_CHECK(payload, path << ": payload write failed");
    uint32_t crc = crcbuf.crc();
    uint64_t size = crcbuf.count();
    out.write(reinterpret_cast<const char*>(&crc), 4);
    out.write(kEndMarker, 8);
    auto end_pos = out.tellp();
    out.seekp(size_pos);
    out.write(reinterpret_cast<const char*>(&size), 8);
    out.seekp(end_pos);
  });
}

void write_framed_file(const std::string& path, std::string_view magic, uint32_t version, std::string_view payload) {
  write_framed_file(path, magic, version,
                    [&](std::ostream& out) { out.write(payload.data(), std::streamsize(payload.size())); });
}

namespace {
// Validates the fixed-size header against the file size; the payload checksum is checked by callers.
FramedInfo parse_framed_header(const char* header, uint64_t file_size, const std::string& path, std::string_view magic,
                               uint32_t max_version, const std::string& what) {
  FUNDUS_CHECK(file_size >= kHeaderSize, path << ": not a " << what << " file (only " << file_size << " bytes)");
  FUNDUS_CHECK(std::string_view(header, 8) == magic,
               path << ": not a " << what << " file (bad magic; expected '" << magic << "')");
  FramedInfo info;
  std::memcpy(&info.version, header + 8, 4);
  std::memcpy(&info.payload_size, header + 16, 8);
  info.payload_offset = kHeaderSize;
  FUNDUS_CHECK(info.version >= 1 && info.version <= max_version,
               path << ": " << what << " format version " << info.version
                    << " is not supported (this build reads up to " << max_version << ")");
  uint64_t expected = kHeaderSize + info.payload_size + kTrailerSize;
  FUNDUS_CHECK(info.payload_size <= file_size && file_size == expected,
               path << ": " << what << " is truncated or has trailing bytes (" << file_size << " bytes, header says "
                    << expected << ")");
  return info;
}

void check_trailer(const char* trailer, uint32_t crc, const std::string& path, const std::string& what) {
  uint32_t stored_crc;
  std::memcpy(&stored_crc, trailer, 4);
  FUNDUS_CHECK(std::string_view(trailer + 4, 8) == std::string_view(kEndMarker, 8),
               path << ": " << what << " is corrupt (end marker missing)");
  FUNDUS_CHECK(stored_crc == crc, path << ": " << what << " is corrupt (checksum mismatch)");
}
}  // namespace

FramedInfo verify_framed_file(const std::string& path, std::string_view magic, uint32_t max_version,
                              const std::string& what) {
  check_magic(magic);
  std::ifstream in(path, std::ios::binary);
  FUNDUS_CHECK(in, path << ": cannot open " << what << " (" << errno_text() << ")");
  in.seekg(0, std::ios::end);
  uint64_t file_size = uint64_t(in.tellg());
  in.seekg(0);
  char header[kHeaderSize] = {};
  in.read(header, kHeaderSize);
  FramedInfo info = parse_framed_header(header, file_size, path, magic, max_version, what);
  uint32_t crc = 0;
  std::vector<char> buf(1 << 20);
  uint64_t left = info.payload_size;
  while (left > 0) {
    size_t take = size_t(std::min<uint64_t>(left, buf.size()));
    in.read(buf.data(), std::streamsize(take));
    FUNDUS_CHECK(in.gcount() == std::streamsize(take), path << ": read error in " << what);
    crc = crc32(buf.data(), take, crc);
    left -= take;
  }
  char trailer[kTrailerSize];
  in.read(trailer, kTrailerSize);
  FUNDUS_CHECK(in.gcount() == std::streamsize(kTrailerSize), path << ": read error in " << what);
  check_trailer(trailer, crc, path, what);
  return info;
}

std::string read_framed_file(const std::string& path, std::string_view magic, uint32_t max_version,
                             const std::string& what, uint32_t* version) {
  check_magic(magic);
  FUNDUS_CHECK(file_exists(path), path << ": " << what << " file not found");
  std::string bytes = read_file(path);
  char header[kHeaderSize] = {};
  std::memcpy(header, bytes.data(), std::min(bytes.size(), kHeaderSize));
  FramedInfo info = parse_framed_header(header, bytes.size(), path, magic, max_version, what);
  const char* payload = bytes.data() + kHeaderSize;
  check_trailer(payload + info.payload_size, crc32(payload, info.payload_size), path, what);
  if (version) *version = info.version;
  bytes.erase(kHeaderSize + info.payload_size);
  bytes.erase(0, kHeaderSize);
  return bytes;
}

}  // namespace fundus
