// Preprocessed-image cache: hits return the same bytes, keys follow content and options, corrupt
// entries are detected and recomputed, concurrent fills from several threads and instances.
#include <algorithm>
#include <thread>

#include <gtest/gtest.h>

#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/preprocess_cache.h"
#include "test_preprocess_fixtures.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::error_of;
using test::same_bytes;

PreprocessOptions small_options() {
  PreprocessOptions o;
  o.size = 64;
  return o;
}

TEST(PreprocessCache, SecondLoadIsAHitWithIdenticalBytes) {
  test::TempDir dir;
  Dataset d = test::synthetic_dataset(dir.file("data"), 2);
  PreprocessCache cache(dir.file("cache"), small_options());
  cv::Mat first = cache.load(d.records[0].image_path);
  EXPECT_EQ(cache.stats().misses, 1);
  EXPECT_EQ(cache.stats().hits, 0);
  cv::Mat second = cache.load(d.records[0].image_path);
  EXPECT_EQ(cache.stats().hits, 1);
  EXPECT_EQ(cache.stats().misses, 1);
  EXPECT_TRUE(same_bytes(first, second));
  EXPECT_TRUE(same_bytes(first, preprocess_fundus_file(d.records[0].image_path, small_options()).image));
  EXPECT_NE(first.data, second.data);  // callers own their copy

  // A new instance (another run) hits the entry on disk.
  PreprocessCache again(dir.file("cache"), small_options());
  EXPECT_TRUE(same_bytes(again.load(d.records[0].image_path), first));
  EXPECT_EQ(again.stats().hits, 1);
  EXPECT_EQ(again.stats().misses, 0);
  std::string entry = again.entry_path(sha256_file(d.records[0].image_path));
  EXPECT_TRUE(file_exists(entry));
  EXPECT_NO_THROW(verify_framed_file(entry, "FNDPPC01", 1, "cache entry"));
}

TEST(PreprocessCache, KeyFollowsContentAndOptions) {
  test::TempDir dir;
  Dataset d = test::synthetic_dataset(dir.file("data"), 2);
  PreprocessCache cache(dir.file("cache"), small_options());
  cache.load(d.records[0].image_path);
  // Same bytes under another name: a hit.
  write_file_atomic(dir.file("copy.jpg"), read_file(d.records[0].image_path));
  cache.load(dir.file("copy.jpg"));
  EXPECT_EQ(cache.stats().hits, 1);
  // Other options: another entry.
  PreprocessOptions other = small_options();
  other.ben_graham = true;
  PreprocessCache bg(dir.file("cache"), other);
  cv::Mat b = bg.load(d.records[0].image_path);
  EXPECT_EQ(bg.stats().misses, 1);
  EXPECT_TRUE(same_bytes(b, preprocess_fundus_file(d.records[0].image_path, other).image));
  EXPECT_NE(bg.entry_path("x"), cache.entry_path("x"));
  // The file is replaced by another image (new content, new mtime): a miss with the new pixels.
  write_file_atomic(d.records[0].image_path, read_file(d.records[1].image_path));
  cv::Mat replaced = cache.load(d.records[0].image_path);
  EXPECT_EQ(cache.stats().misses, 2);
  EXPECT_TRUE(same_bytes(replaced, preprocess_fundus_file(d.records[1].image_path, small_options()).image));
}

TEST(PreprocessCache, CorruptAndTruncatedEntriesAreRecomputed) {
  test::TempDir dir;
  Dataset d = test::synthetic_dataset(dir.file("data"), 1);
  const std::string img = d.records[0].image_path;
  PreprocessCache cache(dir.file("cache"), small_options());
  cv::Mat good = cache.load(img);
  const std::string entry = cache.entry_path(sha256_file(img));
  std::string bytes = read_file(entry);

  // One flipped pixel byte: the checksum catches it.
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x5a;
  write_file_atomic(entry, flipped);
  EXPECT_TRUE(same_bytes(cache.load(img), good));
  EXPECT_EQ(cache.stats().corrupt, 1);
  EXPECT_EQ(cache.stats().misses, 2);
  EXPECT_EQ(read_file(entry), bytes);  // rewritten
  EXPECT_TRUE(same_bytes(cache.load(img), good));
  EXPECT_EQ(cache.stats().hits, 1);

  // Truncated (a crash mid-copy), empty, and garbage.
  for (std::string bad : {bytes.substr(0, bytes.size() / 3), std::string(), std::string("not a cache entry")}) {
    write_file_atomic(entry, bad);
    EXPECT_TRUE(same_bytes(cache.load(img), good));
    EXPECT_EQ(read_file(entry), bytes);
  }
  EXPECT_EQ(cache.stats().corrupt, 4);
}

TEST(PreprocessCache, EntryOfOtherOptionsUnderTheSameNameIsRejected) {
  test::TempDir dir;
  Dataset d = test::synthetic_dataset(dir.file("data"), 1);
  const std::string img = d.records[0].image_path;
  PreprocessOptions a = small_options(), b = small_options();
  b.mask = false;
  PreprocessCache ca(dir.file("cache"), a), cb(dir.file("cache"), b);
  ca.load(img);
  cb.load(img);
  // Put b's (valid, checksummed) entry where a's belongs: the stored options key does not match.
  const std::string sha = sha256_file(img);
  write_file_atomic(ca.entry_path(sha), read_file(cb.entry_path(sha)));
  PreprocessCache fresh(dir.file("cache"), a);
  EXPECT_TRUE(same_bytes(fresh.load(img), preprocess_fundus_file(img, a).image));
  EXPECT_EQ(fresh.stats().corrupt, 1);
}

TEST(PreprocessCache, ConcurrentFillsFromFourThreads) {
  test::TempDir dir;
  Dataset d = test::synthetic_dataset(dir.file("data"), 6);
  std::vector<cv::Mat> expect;
  for (auto& r : d.records) expect.push_back(preprocess_fundus_file(r.image_path, small_options()).image);

  PreprocessCache shared(dir.file("cache"), small_options());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(8, 0);
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      // Threads 0-3 share one instance, 4-7 each have their own (like separate processes).
      PreprocessCache own(dir.file("cache"), small_options());
      PreprocessCache& cache = t < 4 ? shared : own;
      for (int rep = 0; rep < 3; ++rep)
        for (size_t k = 0; k < d.records.size(); ++k) {
          size_t i = (k + size_t(t)) % d.records.size();  // different orders, same items
          mismatches[size_t(t)] += !same_bytes(cache.load(d.records[i].image_path), expect[i]);
        }
    });
  for (auto& t : threads) t.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(mismatches[size_t(t)], 0) << "thread " << t;
  PreprocessCache::Stats s = shared.stats();
  EXPECT_EQ(s.hits + s.misses, 4 * 3 * 6);
  EXPECT_EQ(s.corrupt, 0);
  // Every entry is sound and no temporary file is left behind.
  PreprocessCache check(dir.file("cache"), small_options());
  for (size_t i = 0; i < d.records.size(); ++i) EXPECT_TRUE(same_bytes(check.load(d.records[i].image_path), expect[i]));
  EXPECT_EQ(check.stats().hits, 6);
  test::CommandResult tmp =
      test::run_command("find " + test::shell_quote(dir.file("cache")) + " -name '*.tmp*' | wc -l");
  EXPECT_EQ(std::stoi(tmp.output), 0);
  test::CommandResult n = test::run_command("find " + test::shell_quote(dir.file("cache")) + " -name '*.fpc' | wc -l");
  EXPECT_EQ(std::stoi(n.output), 6);
}

TEST(PreprocessCache, BadImagesAreErrorsAndNotCached) {
  test::TempDir dir;
  PreprocessCache cache(dir.file("cache"), small_options());
  EXPECT_NE(error_of([&] { cache.load(dir.file("nope.jpg")); }).find("nope.jpg: image file not found"),
            std::string::npos);
  write_file_atomic(dir.file("bad.jpg"), "\xFF\xD8 this is not a JPEG");
  EXPECT_NE(error_of([&] { cache.load(dir.file("bad.jpg")); }).find("bad.jpg"), std::string::npos);
  test::CommandResult n = test::run_command("find " + test::shell_quote(dir.file("cache")) + " -type f | wc -l");
  EXPECT_EQ(std::stoi(n.output), 0);
  EXPECT_EQ(cache.stats().hits + cache.stats().misses, 0);
}

TEST(PreprocessCache, UnwritableDirectoryIsAnError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root can write anywhere";
  test::TempDir dir;
  make_dirs(dir.file("ro"));
  test::run_command("chmod 555 " + test::shell_quote(dir.file("ro")));
  EXPECT_NE(error_of([&] { PreprocessCache c(dir.file("ro"), small_options()); }).find("not writable"),
            std::string::npos);
  test::run_command("chmod 755 " + test::shell_quote(dir.file("ro")));
}

}  // namespace
}  // namespace fundus
