// Tensor conversion (values by hand, round trip) and the DataLoader: determinism across worker counts,
// exact resume, epochs, eval mode, the cache, errors on corrupt images, shutdown mid-epoch.
#include <chrono>
#include <cmath>

#include <gtest/gtest.h>

#include "fundus/core/io.h"
#include "fundus/infer/loader.h"
#include "fundus/infer/tensor.h"
#include "../data/test_preprocess_fixtures.h"  // test::synthetic_dataset
#include "test_support.h"

namespace fundus {
namespace {

using test::error_of;

TEST(Tensor, ValuesByHandWithAndWithoutImagenetNormalisation) {
  cv::Mat img(2, 3, CV_8UC3, cv::Scalar(0, 0, 0));
  img.at<cv::Vec3b>(0, 1) = cv::Vec3b(255, 0, 128);  // R G B
  img.at<cv::Vec3b>(1, 2) = cv::Vec3b(51, 102, 204);
  torch::Tensor t = image_to_tensor(img);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 2, 3}));
  ASSERT_EQ(t.scalar_type(), torch::kFloat32);
  EXPECT_FLOAT_EQ(t[0][0][1].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(t[1][0][1].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(t[2][0][1].item<float>(), 128.f / 255.f);
  EXPECT_FLOAT_EQ(t[0][1][2].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ(t[1][1][2].item<float>(), 0.4f);
  EXPECT_FLOAT_EQ(t[2][1][2].item<float>(), 0.8f);
  EXPECT_FLOAT_EQ(t.sum().item<float>(), 1.0f + 128.f / 255.f + 0.2f + 0.4f + 0.8f);

  torch::Tensor n = image_to_tensor(img, Normalization::imagenet());
  EXPECT_NEAR(n[0][0][1].item<float>(), (1.0 - 0.485) / 0.229, 1e-5);  // 2.2489
  EXPECT_NEAR(n[1][0][1].item<float>(), (0.0 - 0.456) / 0.224, 1e-5);  // -2.0357
  EXPECT_NEAR(n[2][0][1].item<float>(), (128.0 / 255 - 0.406) / 0.225, 1e-5);
  EXPECT_NEAR(n[0][0][0].item<float>(), -0.485 / 0.229, 1e-5);
  EXPECT_NEAR(n[2][1][2].item<float>(), (0.8 - 0.406) / 0.225, 1e-5);
  EXPECT_NEAR(n[0][0][1].item<float>(), 2.248908, 1e-5);  // the value torchvision's Normalize gives

  // Same as the PyTorch idiom from_blob -> permute -> /255 -> normalise.
  torch::Tensor ref =
      torch::from_blob(img.data, {2, 3, 3}, torch::kUInt8).permute({2, 0, 1}).to(torch::kFloat32).div(255);
  ref = (ref - torch::tensor({0.485f, 0.456f, 0.406f}).view({3, 1, 1})) /
        torch::tensor({0.229f, 0.224f, 0.225f}).view({3, 1, 1});
  EXPECT_TRUE(torch::allclose(n, ref, 1e-6, 1e-6));
  EXPECT_TRUE(test::same_bytes(tensor_to_image(n, Normalization::imagenet()), img));
}

TEST(Tensor, BatchOfImages) {
  cv::Mat a(4, 5, CV_8UC3, cv::Scalar(10, 20, 30)), b(4, 5, CV_8UC3, cv::Scalar(40, 50, 60));
  torch::Tensor t = images_to_tensor({a, b});
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_TRUE(torch::equal(t[1], image_to_tensor(b)));
  EXPECT_FLOAT_EQ(t[1][2][3][4].item<float>(), 60.f / 255.f);
  EXPECT_NE(error_of([&] { images_to_tensor({a, cv::Mat(5, 5, CV_8UC3)}); }).find("image 1 is 5x5"), std::string::npos);
  EXPECT_THROW(image_to_tensor(cv::Mat(3, 3, CV_8UC1)), Error);
  EXPECT_EQ(Normalization::parse("imagenet").mean[0], 0.485f);
  EXPECT_NE(error_of([] { Normalization::parse("coco"); }).find("known: imagenet, none"), std::string::npos);
}

LoaderOptions train_options(int workers) {
  LoaderOptions o;
  o.preprocess.size = 48;
  o.sampler.kind = SamplerKind::shuffled;
  o.sampler.batch_size = 4;
  o.augment = true;
  o.seed = 77;
  o.workers = workers;
  o.prefetch_batches = 2;
  return o;
}

std::vector<Batch> whole_epoch(DataLoader& loader, int64_t epoch, int64_t skip = 0) {
  std::vector<Batch> out;
  loader.start_epoch(epoch, skip);
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("batch " + std::to_string(i));
    EXPECT_EQ(a[i].indices, b[i].indices);
    EXPECT_EQ(a[i].ids, b[i].ids);
    EXPECT_EQ(a[i].batch, b[i].batch);
    EXPECT_TRUE(torch::equal(a[i].grades, b[i].grades));
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images));  // bit-identical
  }
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { data_ = test::synthetic_dataset(dir_.file("data"), 13); }
  test::TempDir dir_;
  Dataset data_;
};

TEST_F(LoaderTest, BatchesHaveTheContractShapesAndContent) {
  DataLoader loader(data_, train_options(2));
  EXPECT_EQ(loader.batches_per_epoch(), 4);
  std::vector<Batch> e = whole_epoch(loader, 0);
  ASSERT_EQ(e.size(), 4u);
  std::set<int64_t> seen;
  for (size_t b = 0; b < e.size(); ++b) {
    const Batch& x = e[b];
    int64_t n = b < 3 ? 4 : 1;
    EXPECT_EQ(x.images.sizes(), (std::vector<int64_t>{n, 3, 48, 48}));
    EXPECT_EQ(x.images.scalar_type(), torch::kFloat32);
    EXPECT_EQ(x.grades.sizes(), (std::vector<int64_t>{n}));
    EXPECT_EQ(x.grades.scalar_type(), torch::kInt64);
    EXPECT_EQ(x.epoch, 0);
    EXPECT_EQ(x.batch, int64_t(b));
    ASSERT_EQ(int64_t(x.ids.size()), n);
    for (int64_t i = 0; i < n; ++i) {
      const CaseRecord& r = data_.records[size_t(x.indices[size_t(i)])];
      EXPECT_EQ(x.ids[size_t(i)], r.id);
      EXPECT_EQ(x.grades[i].item<int64_t>(), r.grade);
      seen.insert(x.indices[size_t(i)]);
    }
  }
  EXPECT_EQ(seen.size(), 13u);  // shuffled: each image once
  // ImageNet-normalised: the black surround is at -mean/std.
  EXPECT_NEAR(e[0].images[0][0][0][0].item<float>(), -0.485f / 0.229f, 1e-5);
  EXPECT_FALSE(loader.next().has_value());  // stays at the end
}

TEST_F(LoaderTest, SameBatchesWithOneOrThreeWorkers) {
  DataLoader one(data_, train_options(1)), three(data_, train_options(3));
  for (int64_t epoch : {0, 1}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    expect_same_batches(whole_epoch(one, epoch), whole_epoch(three, epoch));
  }
  // Augmentation is really on and differs between epochs.
  std::vector<Batch> e0 = whole_epoch(one, 0), e1 = whole_epoch(one, 1);
  EXPECT_NE(e0[0].indices, e1[0].indices);
}

TEST_F(LoaderTest, ExactResumeWithSkipBatches) {
  DataLoader full(data_, train_options(2));
  std::vector<Batch> all = whole_epoch(full, 3);
  DataLoader resumed(data_, train_options(3));
  std::vector<Batch> tail = whole_epoch(resumed, 3, 2);
  ASSERT_EQ(tail.size(), 2u);
  expect_same_batches(std::vector<Batch>(all.begin() + 2, all.end()), tail);
  EXPECT_TRUE(whole_epoch(resumed, 3, 4).empty());  // skipping everything is allowed
  EXPECT_NE(error_of([&] { resumed.start_epoch(3, 5); }).find("skip_batches 5"), std::string::npos);
}

TEST_F(LoaderTest, AugmentationChangesPixelsButNotTheSamples) {
  LoaderOptions plain = train_options(2);
  plain.augment = false;
  DataLoader a(data_, train_options(2)), b(data_, plain);
  std::vector<Batch> x = whole_epoch(a, 0), y = whole_epoch(b, 0);
  ASSERT_EQ(x.size(), y.size());
  EXPECT_EQ(x[0].indices, y[0].indices);  // same sampler stream
  EXPECT_FALSE(torch::equal(x[0].images, y[0].images));
}

TEST_F(LoaderTest, EvalModeIsInOrderWithoutAugmentation) {
  LoaderOptions o = eval_loader_options(train_options(3), 5);
  o.normalization = Normalization::none();
  DataLoader loader(data_, o);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  std::vector<Batch> e = whole_epoch(loader, 0);
  int64_t next = 0;
  for (const Batch& b : e)
    for (size_t i = 0; i < b.indices.size(); ++i, ++next) {
      ASSERT_EQ(b.indices[i], next);
      cv::Mat expect = preprocess_fundus_file(data_.records[size_t(next)].image_path, o.preprocess).image;
      EXPECT_TRUE(torch::equal(b.images[int64_t(i)], image_to_tensor(expect)));
    }
  EXPECT_EQ(next, 13);
}

TEST_F(LoaderTest, BalancedSamplerThroughTheLoader) {
  LoaderOptions o = train_options(2);
  o.sampler.kind = SamplerKind::balanced;
  o.sampler.batch_size = 6;
  o.sampler.grades_per_batch = 3;
  DataLoader loader(data_, o);
  for (const Batch& b : whole_epoch(loader, 0)) {
    std::set<int64_t> grades;
    for (int64_t i = 0; i < 6; ++i) grades.insert(b.grades[i].item<int64_t>());
    EXPECT_EQ(grades.size(), 3u);
  }
}

TEST_F(LoaderTest, CacheGivesTheSameBatchesAndHitsOnTheSecondEpoch) {
  LoaderOptions cached = train_options(2);
  cached.cache_dir = dir_.file("cache");
  DataLoader with(data_, cached), without(data_, train_options(2));
  expect_same_batches(whole_epoch(with, 0), whole_epoch(without, 0));
  EXPECT_EQ(with.cache_stats().misses, 13);
  expect_same_batches(whole_epoch(with, 1), whole_epoch(without, 1));
  EXPECT_EQ(with.cache_stats().hits, 13);
  EXPECT_EQ(without.cache_stats().hits + without.cache_stats().misses, 0);
}

TEST_F(LoaderTest, CorruptImageMakesNextThrowNamingTheFile) {
  std::string victim = data_.records[6].image_path;
  std::string bytes = read_file(victim);
  write_file_atomic(victim, bytes.substr(0, bytes.size() / 2));
  for (int workers : {1, 3}) {
    LoaderOptions o = eval_loader_options(train_options(workers), 2);
    DataLoader loader(data_, o);
    loader.start_epoch(0);
    std::string message;
    int good = 0;
    try {
      while (loader.next()) ++good;
    } catch (const Error& e) {
      message = e.message();
    }
    EXPECT_EQ(good, 3) << "batches 0-2 precede the one holding record 6";
    EXPECT_NE(message.find("case6.jpg: truncated JPEG"), std::string::npos) << message;
    EXPECT_NE(message.find("case 'case6'"), std::string::npos) << message;
    EXPECT_FALSE(loader.next().has_value());  // the epoch has ended
    // A new epoch works again up to the bad batch.
    loader.start_epoch(0);
    EXPECT_TRUE(loader.next().has_value());
  }
}

TEST_F(LoaderTest, MissingImageIsAnErrorNotAHang) {
  data_.records[0].image_path = dir_.file("data/images/gone.jpg");
  DataLoader loader(data_, eval_loader_options(train_options(2), 4));
  loader.start_epoch(0);
  EXPECT_NE(error_of([&] { loader.next(); }).find("gone.jpg: image file not found"), std::string::npos);
}

// Issue 9 item 3: training and embedding skip nothing silently: an image with no field of view stops
// the epoch with an error naming the file and the case, with or without the preprocessing cache.
TEST_F(LoaderTest, ImageWithoutFieldOfViewIsAnErrorNamingIt) {
  write_image_rgb(data_.records[1].image_path, cv::Mat::zeros(96, 120, CV_8UC3));
  for (bool cached : {false, true}) {
    LoaderOptions o = eval_loader_options(train_options(2), 4);
    if (cached) o.cache_dir = dir_.file("cache");
    DataLoader loader(data_, o);
    loader.start_epoch(0);
    std::string message = error_of([&] { loader.next(); });
    EXPECT_NE(message.find("case1.jpg: no field of view found (the image is practically uniform"), std::string::npos)
        << message;
    EXPECT_NE(message.find("not a fundus photograph (case 'case1')"), std::string::npos) << message;
  }
}

TEST_F(LoaderTest, DestroyOrRestartMidEpochJoinsCleanly) {
  // What epoch 1 must be: batches are a pure function of (seed, epoch, batch index).
  DataLoader reference(data_, train_options(3));
  const std::vector<Batch> epoch1 = whole_epoch(reference, 1);
  ASSERT_GE(epoch1.size(), 2u);
  for (int rep = 0; rep < 3; ++rep) {
    DataLoader loader(data_, train_options(3));
    loader.start_epoch(0);
    auto first = loader.next();
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->epoch, 0);
    loader.start_epoch(1);  // abandons epoch 0 with workers blocked on full queues
    auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    // Nothing of the abandoned epoch leaks into the new one.
    EXPECT_EQ(b->epoch, 1);
    EXPECT_EQ(b->batch, 0);
    EXPECT_EQ(b->ids, epoch1[0].ids);
    EXPECT_TRUE(torch::equal(b->images, epoch1[0].images));
  }  // destroyed mid-epoch 1 (joins its workers, or this test hangs)
  {
    DataLoader unused(data_, train_options(2));
    unused.start_epoch(0);  // destroyed before any next()
  }
  // A loader restarted at the same epoch delivers that whole epoch again, unchanged.
  DataLoader again(data_, train_options(3));
  again.start_epoch(1);
  ASSERT_TRUE(again.next().has_value());
  expect_same_batches(whole_epoch(again, 1), epoch1);
}

TEST_F(LoaderTest, BadOptionsAndUsage) {
  LoaderOptions o = train_options(2);
  o.prefetch_batches = 0;
  EXPECT_NE(error_of([&] { DataLoader l(data_, o); }).find("loader.prefetch_batches"), std::string::npos);
  DataLoader l(data_, train_options(2));
  EXPECT_NE(error_of([&] { l.next(); }).find("start_epoch"), std::string::npos);
  EXPECT_NE(error_of([&] { DataLoader e(Dataset{}, train_options(1)); }).find("empty"), std::string::npos);
}

}  // namespace
}  // namespace fundus
