#include "fundus/model/zip_archive.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"

namespace fundus {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr size_t kLocalHeaderSize = 30, kCentralHeaderSize = 46, kEndSize = 22;

// Little-endian field access with bounds checks against the whole file.
class Cursor {
 public:
  Cursor(std::string_view bytes, uint64_t pos, const std::string& source) : b_(bytes), pos_(pos), source_(source) {}
  template <typename T>
  T get() {
    FUNDUS_CHECK(pos_ <= b_.size() && sizeof(T) <= b_.size() - pos_,
                 source_ << ": truncated zip structure at offset " << pos_ << " (file is " << b_.size() << " bytes)");
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<uint8_t>(b_[pos_ + i])) << (8 * i);
    pos_ += sizeof(T);
    return v;
  }
  std::string_view bytes(uint64_t n) {
    FUNDUS_CHECK(pos_ <= b_.size() && n <= b_.size() - pos_, source_ << ": truncated zip structure at offset " << pos_);
    auto v = b_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  void skip(uint64_t n) { bytes(n); }
  uint64_t pos() const { return pos_; }

 private:
  std::string_view b_;
  uint64_t pos_;
  const std::string& source_;
};

template <typename T>
void put(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
}

}  // namespace

ZipReader::ZipReader(std::string_view bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {
  FUNDUS_CHECK(bytes_.size() >= kEndSize,
               source_ << ": truncated or not a zip archive (" << bytes_.size() << " bytes)");
  // The end record sits in the last 22 + 65535 (comment) bytes; search backwards for its signature.
  int64_t end_pos = -1;
  int64_t lowest = std::max<int64_t>(0, static_cast<int64_t>(bytes_.size()) - 65557);
  for (int64_t p = static_cast<int64_t>(bytes_.size() - kEndSize); p >= lowest; --p) {
    if (Cursor(bytes_, p, source_).get<uint32_t>() == kEndSig) {
      end_pos = p;
      break;
    }
  }
  FUNDUS_CHECK(end_pos >= 0, source_ << ": truncated or not a zip archive (no end-of-central-directory record)");
  Cursor end(bytes_, end_pos + 4, source_);
  end.skip(4);  // disk numbers
  uint64_t count = end.get<uint16_t>();
  end.skip(2);
  uint64_t cd_size = end.get<uint32_t>();
  uint64_t cd_offset = end.get<uint32_t>();
  if (count == 0xffff || cd_offset == 0xffffffff || cd_size == 0xffffffff) {
    FUNDUS_CHECK(end_pos >= 20, source_ << ": Zip64 archive without a Zip64 locator");
    Cursor loc(bytes_, end_pos - 20, source_);
    FUNDUS_CHECK(loc.get<uint32_t>() == kZip64LocatorSig, source_ << ": Zip64 archive without a Zip64 locator");
    loc.skip(4);
    Cursor end64(bytes_, loc.get<uint64_t>(), source_);
    FUNDUS_CHECK(end64.get<uint32_t>() == kZip64EndSig, source_ << ": corrupt Zip64 end record");
    end64.skip(8 + 2 + 2 + 4 + 4 + 8);
    count = end64.get<uint64_t>();
    cd_size = end64.get<uint64_t>();
    cd_offset = end64.get<uint64_t>();
  }
  FUNDUS_CHECK(cd_offset <= bytes_.size() && cd_size <= bytes_.size() - cd_offset,
               source_ << ": truncated zip archive (central directory at " << cd_offset << " + " << cd_size
                       << " bytes beyond the end of the " << bytes_.size() << "-byte file)");

  Cursor cd(bytes_, cd_offset, source_);
  for (uint64_t k = 0; k < count; ++k) {
    FUNDUS_CHECK(cd.get<uint32_t>() == kCentralSig, source_ << ": corrupt zip central directory (entry " << k << ")");
    cd.skip(2 + 2);
    uint16_t flags = cd.get<uint16_t>();
    uint16_t method = cd.get<uint16_t>();
    cd.skip(4);
    Entry e;
    e.crc = cd.get<uint32_t>();
    uint64_t csize = cd.get<uint32_t>();
    e.size = cd.get<uint32_t>();
    uint16_t name_len = cd.get<uint16_t>(), extra_len = cd.get<uint16_t>(), comment_len = cd.get<uint16_t>();
    cd.skip(2 + 2 + 4);
    uint64_t local = cd.get<uint32_t>();
    e.name = std::string(cd.bytes(name_len));
    Cursor extra(cd.bytes(extra_len), 0, source_);
    while (extra.pos() + 4 <= extra_len) {
      uint16_t id = extra.get<uint16_t>(), len = extra.get<uint16_t>();
      if (id != 0x0001) {
        extra.skip(len);
        continue;
      }
      if (e.size == 0xffffffff) e.size = extra.get<uint64_t>();
      if (csize == 0xffffffff) csize = extra.get<uint64_t>();
      if (local == 0xffffffff) local = extra.get<uint64_t>();
      break;
    }
    cd.skip(comment_len);
    FUNDUS_CHECK(!(flags & 1), source_ << ": zip entry '" << e.name << "' is encrypted");
    e.method = method == 0 && csize == e.size ? 0 : std::max<uint16_t>(method, 1);
    Cursor lh(bytes_, local, source_);
    FUNDUS_CHECK(lh.get<uint32_t>() == kLocalSig, source_ << ": corrupt local header of zip entry '" << e.name << "'");
    lh.skip(kLocalHeaderSize - 4 - 4);
    uint16_t lname = lh.get<uint16_t>(), lextra = lh.get<uint16_t>();
    e.data_offset = local + kLocalHeaderSize + lname + lextra;
    FUNDUS_CHECK(e.data_offset <= bytes_.size() && e.size <= bytes_.size() - e.data_offset,
                 source_ << ": truncated file: zip entry '" << e.name << "' (" << e.size << " bytes at offset "
                         << e.data_offset << ") extends beyond the end of the " << bytes_.size() << "-byte file");
    names_.push_back(e.name);
    entries_.push_back(std::move(e));
  }
}

const ZipReader::Entry* ZipReader::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

bool ZipReader::contains(const std::string& name) const { return find(name) != nullptr; }

std::string_view ZipReader::read(const std::string& name) const {
  const Entry* e = find(name);
  FUNDUS_CHECK(e, source_ << ": missing record '" << name << "' in the zip archive");
  FUNDUS_CHECK(e->method == 0, source_ << ": zip entry '" << name << "' is compressed (method " << e->method
                                       << "); torch.save writes stored entries only");
  std::string_view data = bytes_.substr(e->data_offset, e->size);
  FUNDUS_CHECK(crc32(data) == e->crc, source_ << ": CRC mismatch in zip entry '" << name << "' (corrupt file)");
  return data;
}

void ZipWriter::add(const std::string& name, std::string_view data) {
  constexpr uint64_t kAlign = 64;
  uint64_t header = out_.size();
  // Padding goes into an extra field (id "FB", like PyTorch) so that the data starts 64-aligned.
  uint64_t unpadded = header + kLocalHeaderSize + name.size() + 4;
  uint64_t pad = (kAlign - unpadded % kAlign) % kAlign;
  FUNDUS_CHECK(unpadded + pad + data.size() < std::numeric_limits<uint32_t>::max() && name.size() < 0xffff,
               "zip writer: archive would exceed 4 GiB (entry '" << name << "')");
  Entry e{name, static_cast<uint32_t>(header), static_cast<uint32_t>(data.size()), crc32(data)};
  put<uint32_t>(out_, kLocalSig);
  put<uint16_t>(out_, 20);            // version needed
  put<uint16_t>(out_, 0);             // flags
  put<uint16_t>(out_, 0);             // stored
  put<uint16_t>(out_, 0);             // time 00:00
  put<uint16_t>(out_, (1 << 5) | 1);  // date 1980-01-01: fixed, so output is byte-reproducible
  put<uint32_t>(out_, e.crc);
  put<uint32_t>(out_, e.size);
  put<uint32_t>(out_, e.size);
  put<uint16_t>(out_, static_cast<uint16_t>(name.size()));
  put<uint16_t>(out_, static_cast<uint16_t>(4 + pad));
  out_ += name;
  put<uint16_t>(out_, 0x4246);
  put<uint16_t>(out_, static_cast<uint16_t>(pad));
  out_.append(pad, 'Z');
  out_.append(data.data(), data.size());
  entries_.push_back(std::move(e));
}

std::string ZipWriter::finish() {
  uint64_t cd_offset = out_.size();
  for (const auto& e : entries_) {
    put<uint32_t>(out_, kCentralSig);
    put<uint16_t>(out_, 20);
    put<uint16_t>(out_, 20);
    put<uint16_t>(out_, 0);
    put<uint16_t>(out_, 0);
    put<uint16_t>(out_, 0);
    put<uint16_t>(out_, (1 << 5) | 1);
    put<uint32_t>(out_, e.crc);
    put<uint32_t>(out_, e.size);
    put<uint32_t>(out_, e.size);
    put<uint16_t>(out_, static_cast<uint16_t>(e.name.size()));
    put<uint16_t>(out_, 0);  // extra
    put<uint16_t>(out_, 0);  // comment
    put<uint16_t>(out_, 0);  // disk
    put<uint16_t>(out_, 0);  // internal attributes
    put<uint32_t>(out_, 0);  // external attributes
    put<uint32_t>(out_, e.offset);
    out_ += e.name;
  }
  uint64_t cd_size = out_.size() - cd_offset;
  FUNDUS_CHECK(entries_.size() < 0xffff && out_.size() < std::numeric_limits<uint32_t>::max(),
               "zip writer: too many entries or archive too large");
  put<uint32_t>(out_, kEndSig);
  put<uint16_t>(out_, 0);
  put<uint16_t>(out_, 0);
  put<uint16_t>(out_, static_cast<uint16_t>(entries_.size()));
  put<uint16_t>(out_, static_cast<uint16_t>(entries_.size()));
  put<uint32_t>(out_, static_cast<uint32_t>(cd_size));
  put<uint32_t>(out_, static_cast<uint32_t>(cd_offset));
  put<uint16_t>(out_, 0);
  return std::move(out_);
}

}  // namespace fundus
