// Window loader: [B, W] contents, epoch coverage, seeded shuffling, batch-size
// independence, exact resume through a JSON round trip of LoaderState, sequential
// (validation) mode, and refusal of positions from other data or shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "data_test_util.h"
#include "tinyseek/base/check.h"
#include "tinyseek/data/loader.h"

namespace tinyseek::data {
namespace {

// Token i has id i % vocab: a window's contents reveal where it starts.
std::shared_ptr<const TokenSplit> counting_split(int64_t n, int64_t vocab = 1 << 20) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(i % vocab);
  return TokenSplit::from_tokens(t, vocab);
}

std::vector<int32_t> take(WindowLoader& l, int64_t batch) {
  std::vector<int32_t> out(static_cast<size_t>(batch * l.window()));
  const int64_t rows = l.next(out.data(), batch);
  out.resize(static_cast<size_t>(rows * l.window()));
  return out;
}

TEST(Loader, WindowsAreContiguousAndCoverTheEpochOnce) {
  const int64_t T = 16, D = 1, W = T + 1 + D, N = 10000;
  WindowLoader l(counting_split(N), {W, /*stride=*/T, /*seed=*/42, /*shuffle=*/true});
  const int64_t per_epoch = l.windows_in_epoch();
  const int64_t offset = l.window_start(0) % T;
  EXPECT_EQ(per_epoch, (N - W - offset) / T + 1);
  std::set<int64_t> starts;
  std::vector<int64_t> served_order;
  const int64_t B = 4;
  for (int64_t served = 0; served + B <= per_epoch; served += B) {
    const std::vector<int32_t> batch = take(l, B);
    for (int64_t b = 0; b < B; ++b) {
      const int32_t* row = batch.data() + b * W;
      for (int64_t k = 1; k < W; ++k) ASSERT_EQ(row[k], row[0] + k);  // T+1+D consecutive tokens
      EXPECT_EQ((row[0] - offset) % T, 0);
      EXPECT_TRUE(starts.insert(row[0]).second) << "window at " << row[0] << " served twice in one epoch";
      served_order.push_back(row[0]);
    }
  }
  std::printf("epoch 0: %lld windows of %lld tokens (stride %lld, offset %lld), %zu distinct starts seen\n",
              static_cast<long long>(per_epoch), static_cast<long long>(W), static_cast<long long>(T),
              static_cast<long long>(offset), starts.size());
  EXPECT_EQ(static_cast<int64_t>(starts.size()), per_epoch / B * B);
  EXPECT_FALSE(std::is_sorted(served_order.begin(), served_order.end()));  // shuffled
}

TEST(Loader, SeededShufflingIsDeterministic) {
  auto split = counting_split(5000);
  WindowLoader a(split, {33, 0, 7, true}), b(split, {33, 0, 7, true}), c(split, {33, 0, 8, true});
  const auto xa = take(a, 300), xb = take(b, 300), xc = take(c, 300);  // crosses epoch boundaries
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
  EXPECT_GT(a.state().epoch, 0u);
  // Epochs differ from each other.
  WindowLoader d(split, {33, 0, 7, true});
  const int64_t n = d.windows_in_epoch();
  const auto e0 = take(d, n), e1 = take(d, n);
  EXPECT_NE(e0, e1);
  // The same windows, just reordered within an epoch (offsets may differ).
  EXPECT_EQ(e0.size(), static_cast<size_t>(n * 33));
}

TEST(Loader, BatchSizeDoesNotChangeTheStream) {
  auto split = counting_split(3000);
  WindowLoader one(split, {20, 0, 3, true}), many(split, {20, 0, 3, true});
  std::vector<int32_t> joined;
  for (int i = 0; i < 70; ++i) {
    const auto x = take(many, 3);
    joined.insert(joined.end(), x.begin(), x.end());
  }
  EXPECT_EQ(take(one, 210), joined);
}

TEST(Loader, ResumeFromSavedStateIsExact) {
  auto split = counting_split(4000);
  const LoaderOptions opt{65, 64, 1234, true};
  WindowLoader straight(split, opt);
  std::vector<int32_t> reference;
  for (int step = 0; step < 80; ++step) {
    const auto x = take(straight, 4);
    reference.insert(reference.end(), x.begin(), x.end());
  }
  // Stop after 37 steps, save the state through JSON text, continue in a new loader.
  WindowLoader first(split, opt);
  std::vector<int32_t> resumed;
  for (int step = 0; step < 37; ++step) {
    const auto x = take(first, 4);
    resumed.insert(resumed.end(), x.begin(), x.end());
  }
  const std::string saved = loader_state_to_json(first.state()).dump();
  std::printf("saved loader state after 37 steps: %s (%lld windows per epoch)\n", saved.c_str(),
              static_cast<long long>(first.windows_in_epoch()));
  WindowLoader second(split, opt);
  second.restore(loader_state_from_json(nlohmann::json::parse(saved)));
  EXPECT_EQ(second.state(), first.state());
  for (int step = 37; step < 80; ++step) {
    const auto x = take(second, 4);
    resumed.insert(resumed.end(), x.begin(), x.end());
  }
  EXPECT_GT(second.state().epoch, 1u);  // the run crossed epochs after the resume
  EXPECT_EQ(resumed, reference);
}

TEST(Loader, SequentialModeServesEachWindowOnceInOrder) {
  auto split = counting_split(1000);
  WindowLoader v(split, {101, 0, 0, false});
  EXPECT_EQ(v.windows_in_epoch(), (1000 - 101) / 100 + 1);
  std::vector<int32_t> starts;
  for (;;) {
    const auto x = take(v, 4);
    if (x.empty()) break;
    for (size_t r = 0; r < x.size() / 101; ++r) starts.push_back(x[r * 101]);
  }
  EXPECT_EQ(starts, (std::vector<int32_t>{0, 100, 200, 300, 400, 500, 600, 700, 800}));
  EXPECT_TRUE(take(v, 4).empty());  // stays exhausted
  v.reset();
  EXPECT_EQ(take(v, 1)[0], 0);
}

TEST(Loader, RefusesPositionsFromOtherDataOrShapes) {
  auto message_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.message();
    }
    return "(no error)";
  };
  auto split = counting_split(2000);
  WindowLoader l(split, {50, 0, 9, true});
  take(l, 10);
  const LoaderState s = l.state();
  WindowLoader other_seed(split, {50, 0, 10, true}), other_window(split, {60, 0, 9, true});
  WindowLoader other_data(counting_split(2500), {50, 0, 9, true});
  for (WindowLoader* w : {&other_seed, &other_window, &other_data})
    EXPECT_NE(message_of([&] { w->restore(s); }).find("saved data position was made for"), std::string::npos);
  LoaderState past = s;
  past.index = 1000000;
  EXPECT_NE(message_of([&] { l.restore(past); }).find("past the"), std::string::npos);
  nlohmann::json j = loader_state_to_json(s);
  j.erase("index");
  EXPECT_NE(message_of([&] { loader_state_from_json(j); }).find("\"index\""), std::string::npos);
  j = loader_state_to_json(s);
  j["epoch"] = -1;
  EXPECT_NE(message_of([&] { loader_state_from_json(j); }).find("\"epoch\""), std::string::npos);
  // Too little data for one window, and bad shapes.
  EXPECT_NE(message_of([&] { WindowLoader(counting_split(10), {11, 0, 0, true}); }).find("fewer than one window"),
            std::string::npos);
  EXPECT_NE(message_of([&] { WindowLoader(split, {1, 0, 0, true}); }).find("at least 2"), std::string::npos);
}

}  // namespace
}  // namespace tinyseek::data
