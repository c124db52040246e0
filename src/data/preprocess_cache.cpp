#include "fundus/data/preprocess_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"

namespace fundus {

namespace {
constexpr std::string_view kMagic = "FNDPPC01";
constexpr uint32_t kVersion = 1;
const char* kWhat = "preprocessed-image cache entry";
}  // namespace

PreprocessCache::PreprocessCache(std::string dir, PreprocessOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {
  options_.validate();
  FUNDUS_CHECK(!dir_.empty(), "preprocess cache: empty directory name");
  make_dirs(dir_);
  FUNDUS_CHECK(::access(dir_.c_str(), W_OK) == 0, dir_ << ": preprocess cache directory is not writable");
  key_ = options_.cache_key();
}

std::string PreprocessCache::entry_path(const std::string& content_sha256) const {
  std::string k = sha256_hex(content_sha256 + "\n" + key_);
  return join_path(join_path(dir_, k.substr(0, 2)), k + ".fpc");
}

std::string PreprocessCache::content_hash(const std::string& path, std::string* bytes) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    read_image_file(path);  // throws the image policy's error naming the path (missing, a directory, ...)
    FUNDUS_THROW(path << ": image file changed while being read");
  }
  const int64_t mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  {
    std::lock_guard<std::mutex> lock(memo_mu_);
    auto it = memo_.find(path);
    if (it != memo_.end() && it->second.size == int64_t(st.st_size) && it->second.mtime_ns == mtime_ns)
      return it->second.sha;
  }
  *bytes = read_image_file(path);
  std::string sha = sha256_hex(*bytes);
  std::lock_guard<std::mutex> lock(memo_mu_);
  memo_[path] = Memo{int64_t(st.st_size), mtime_ns, sha};
  return sha;
}

cv::Mat PreprocessCache::load(const std::string& image_path) {
  std::string bytes;
  std::string sha = content_hash(image_path, &bytes);
  std::string entry = entry_path(sha);
  if (file_exists(entry)) {
    try {
      std::string payload = read_framed_file(entry, kMagic, kVersion, kWhat);
      BinaryReader in(payload, entry);
      FUNDUS_CHECK(in.get_string() == key_, entry << ": " << kWhat << " has other preprocessing options");
      FUNDUS_CHECK(in.get_string() == sha, entry << ": " << kWhat << " belongs to other image content");
      int32_t rows = in.get<int32_t>(), cols = in.get<int32_t>();
      FUNDUS_CHECK(rows == options_.size && cols == options_.size,
                   entry << ": " << kWhat << " has size " << cols << "x" << rows);
      std::vector<uint8_t> pixels = in.get_array<uint8_t>();
      FUNDUS_CHECK(pixels.size() == size_t(rows) * size_t(cols) * 3 && in.at_end(),
                   entry << ": " << kWhat << " has a bad pixel count");
      cv::Mat image(rows, cols, CV_8UC3);
      std::memcpy(image.data, pixels.data(), pixels.size());
      ++hits_;
      return image;
    } catch (const Error& e) {
      ++corrupt_;
      FUNDUS_WARN(e.message() << "; recomputing it");
    }
  }
  if (bytes.empty()) {  // the hash came from the memo: read the file and make sure it is still the same content
    bytes = read_image_file(image_path);
    sha = sha256_hex(bytes);
    entry = entry_path(sha);
  }
  cv::Mat image = preprocess_fundus_bytes(bytes, image_path, options_).image;
  ++misses_;
  BinaryWriter out;
  out.put_string(key_);
  out.put_string(sha);
  out.put<int32_t>(image.rows);
  out.put<int32_t>(image.cols);
  out.put_array(image.data, image.total() * 3);
  try {
    make_dirs(parent_dir(entry));
    write_framed_file(entry, kMagic, kVersion, out.bytes());
  } catch (const Error& e) {  // a full disk must not stop training: the image itself is fine
    FUNDUS_WARN("preprocess cache: cannot store an entry (" << e.message() << ")");
  }
  return image;
}

PreprocessCache::Stats PreprocessCache::stats() const {
  Stats s;
  s.hits = hits_.load();
  s.misses = misses_.load();
  s.corrupt = corrupt_.load();
  return s;
}

}  // namespace fundus
