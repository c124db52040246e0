#include "fundus/index/index_file.h"

#include <algorithm>
#include <fstream>
#include <mutex>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/index/index_factory.h"

namespace fundus {

namespace {
constexpr char kMagic[] = "FNDINDX1";
constexpr uint32_t kVersion = 2;  // 2: embeddings_token

struct Header {
  IndexFileInfo info;
  std::vector<int64_t> ids;
};

std::string encode_header(const IndexFileInfo& info, const std::vector<int64_t>& ids) {
  BinaryWriter w;
  w.put_string(info.type);
  w.put_string(info.spec);
  w.put<int32_t>(info.dim);
  w.put<int64_t>(info.count);
  w.put_string(info.ids_sha256);
  w.put_string(info.provenance.store_id);
  w.put<int64_t>(info.provenance.model_id);
  w.put<int64_t>(info.provenance.embeddings_version);
  w.put_string(info.provenance.embeddings_token);
  w.put_array(ids.data(), ids.size());
  return w.take();
}

Header decode_header(const std::string& bytes, const std::string& path) {
  BinaryReader r(bytes, path);
  Header h;
  h.info.type = r.get_string();
  h.info.spec = r.get_string();
  h.info.dim = r.get<int32_t>();
  h.info.count = r.get<int64_t>();
  h.info.ids_sha256 = r.get_string();
  h.info.provenance.store_id = r.get_string();
  h.info.provenance.model_id = r.get<int64_t>();
  h.info.provenance.embeddings_version = r.get<int64_t>();
  h.info.provenance.embeddings_token = r.get_string();
  h.ids = r.get_array<int64_t>();
  FUNDUS_CHECK(r.at_end(), path << ": index header has trailing bytes");
  FUNDUS_CHECK(h.info.dim > 0 && h.info.dim <= kMaxIndexDim && h.info.count == int64_t(h.ids.size()),
               path << ": inconsistent index header (dim " << h.info.dim << ", count " << h.info.count << ", "
                    << h.ids.size() << " ids)");
  FUNDUS_CHECK(ids_checksum(h.ids) == h.info.ids_sha256, path << ": index header ids do not match their checksum");
  return h;
}

// Verifies the frame, then opens the payload: returns the header and leaves `in` at the native bytes.
Header open_index(const std::string& path, std::ifstream& in, uint64_t& native_size, uint64_t& file_bytes) {
  FUNDUS_CHECK(file_exists(path), path << ": index file not found");
  FramedInfo frame = verify_framed_file(path, kMagic, kVersion, "vector index");
  FUNDUS_CHECK(frame.version == kVersion, path << ": index file format " << frame.version << " from an older build "
                                               << "(no fingerprint of the vectors); it must be rebuilt");
  in.open(path, std::ios::binary);
  FUNDUS_CHECK(in, path << ": cannot open index file");
  in.seekg(std::streamoff(frame.payload_offset));
  uint64_t header_size = 0;
  in.read(reinterpret_cast<char*>(&header_size), sizeof header_size);
  FUNDUS_CHECK(in && frame.payload_size >= sizeof header_size && header_size <= frame.payload_size - sizeof header_size,
               path << ": corrupt index header size");
  std::string bytes(header_size, '\0');
  in.read(bytes.data(), std::streamsize(header_size));
  FUNDUS_CHECK(in, path << ": read error in index header");
  native_size = frame.payload_size - sizeof header_size - header_size;
  file_bytes = frame.payload_offset + frame.payload_size + 12;
  return decode_header(bytes, path);
}
}  // namespace

std::string ids_checksum(const std::vector<int64_t>& ids) {
  return Sha256().update(ids.data(), ids.size() * sizeof(int64_t)).hex_digest();
}

void VectorIndex::save(const std::string& path, const IndexProvenance& provenance) const {
  // The writer lock: companions may swap in-memory copies for the files just written.
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  std::vector<int64_t> ids(ids_.begin(), ids_.end());
  std::sort(ids.begin(), ids.end());
  IndexFileInfo info;
  info.type = type();
  info.spec = describe();
  info.dim = dim_;
  info.count = int64_t(ids.size());
  info.ids_sha256 = ids_checksum(ids);
  info.provenance = provenance;
  std::string header = encode_header(info, ids);
  save_companions(path, info, ids);
  write_framed_file(path, kMagic, kVersion, [&](std::ostream& out) {
    uint64_t header_size = header.size();
    out.write(reinterpret_cast<const char*>(&header_size), sizeof header_size);
    out.write(header.data(), std::streamsize(header.size()));
    write_native(out);
  });
}

LoadedIndex load_index(const std::string& path) {
  std::ifstream in;
  uint64_t native_size = 0;
  LoadedIndex out;
  Header h = open_index(path, in, native_size, out.info.file_bytes);
  out.index = make_index(parse_index_spec(h.info.spec), h.info.dim);
  FUNDUS_CHECK(out.index->type() == h.info.type,
               path << ": index type '" << h.info.type << "' does not match spec '" << h.info.spec << "'");
  auto start = in.tellg();
  out.index->read_native(in, native_size, path);
  FUNDUS_CHECK(in && uint64_t(in.tellg() - start) == native_size,
               path << ": " << h.info.type << " data has the wrong size (" << native_size << " bytes)");
  FUNDUS_CHECK(out.index->native_count() == h.info.count, path << ": index holds " << out.index->native_count()
                                                               << " vectors but its header lists " << h.info.count
                                                               << " ids");
  out.index->ids_.insert(h.ids.begin(), h.ids.end());
  out.index->load_companions(path, h.info);
  uint64_t bytes = out.info.file_bytes;
  out.info = h.info;
  out.info.file_bytes = bytes;
  return out;
}

IndexFileInfo read_index_info(const std::string& path) {
  std::ifstream in;
  uint64_t native_size = 0, file_bytes = 0;
  Header h = open_index(path, in, native_size, file_bytes);
  h.info.file_bytes = file_bytes;
  return h.info;
}

Json index_info_to_json(const IndexFileInfo& info) {
  return {{"type", info.type},
          {"spec", info.spec},
          {"dim", info.dim},
          {"count", info.count},
          {"ids_sha256", info.ids_sha256},
          {"store_id", info.provenance.store_id},
          {"model_id", info.provenance.model_id},
          {"embeddings_version", info.provenance.embeddings_version},
          {"embeddings_token", info.provenance.embeddings_token},
          {"file_bytes", info.file_bytes}};
}

std::string format_index_info(const IndexFileInfo& info) {
  std::string s;
  s += "type:               " + info.type + "\n";
  s += "spec:               " + info.spec + "\n";
  s += "vectors:            " + std::to_string(info.count) + " x " + std::to_string(info.dim) + "\n";
  s += "file size:          " + strprintf("%.1f MB", double(info.file_bytes) / 1e6) + "\n";
  s += "ids sha256:         " + info.ids_sha256 + "\n";
  if (info.provenance.model_id >= 0) {
    s += "store id:           " + info.provenance.store_id + "\n";
    s += "model id:           " + std::to_string(info.provenance.model_id) + "\n";
    s += "embeddings version: " + std::to_string(info.provenance.embeddings_version) + "\n";
    s += "embeddings token:   " + (info.provenance.embeddings_token.empty() ? "-" : info.provenance.embeddings_token) +
         "\n";
  } else {
    s += "provenance:         not built from a store\n";
  }
  return s;
}

}  // namespace fundus
