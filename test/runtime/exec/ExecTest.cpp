//===- ExecTest.cpp - Running compiled model code -------------------------===//
//
// The thread pool and its barrier under stress; the model runtime driving
// FakeModel.c (a hand-written stand-in for generated code) from a bundle
// written here by hand: its logits against an independent reference,
// batching and thread counts that must not change a bit, the context
// limit, every check at open (ABI, layout hash, sizes, checksums), the
// ABI's contract on acquire/release; and model-run's command line, built
// from FakeModel.c and the combined runtime archive only.
//
//===----------------------------------------------------------------------===//

#include "runtime/bundle/Bundle.h"
#include "runtime/exec/Model.h"
#include "runtime/exec/ThreadPool.h"
#include "runtime/exec/model.h"
#include "test/runtime/exec/FakeModel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace moec;
using exec::ThreadPool;

namespace {

//===----------------------------------------------------------------------===//
// Thread pool
//===----------------------------------------------------------------------===//

TEST(ThreadPool, RunsEveryThreadOnceWithTheCallerAsThreadZero) {
  for (unsigned threads : {1u, 2u, 5u}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    std::vector<std::atomic<int>> runs(threads);
    std::atomic<bool> callerIsZero{false};
    std::atomic<int> wrongCount{0};
    std::thread::id caller = std::this_thread::get_id();
    for (int job = 0; job < 100; ++job)
      pool.run([&](unsigned i, unsigned n) {
        runs[i].fetch_add(1);
        if (n != threads)
          wrongCount.fetch_add(1);
        if (i == 0)
          callerIsZero = std::this_thread::get_id() == caller;
        if (ThreadPool::currentThreadIndex() != int(i))
          wrongCount.fetch_add(1);
      });
    for (unsigned i = 0; i < threads; ++i)
      EXPECT_EQ(runs[i].load(), 100) << "thread " << i;
    EXPECT_TRUE(callerIsZero);
    EXPECT_EQ(wrongCount.load(), 0);
    EXPECT_EQ(ThreadPool::currentThreadIndex(), -1);
  }
}

/// Many jobs, many barriers each: after every barrier, each thread sees
/// what every thread wrote before it (plain writes: the barrier must order
/// them), and nobody runs ahead into the next phase.
void barrierStress(unsigned threads, int64_t spinNanos, int jobs, int phases) {
  ThreadPool pool(threads, spinNanos);
  std::vector<uint64_t> slots(threads * 16); // a cache line apart
  std::atomic<uint64_t> errors{0};
  for (int job = 0; job < jobs; ++job)
    pool.run([&](unsigned i, unsigned n) {
      for (int phase = 0; phase < phases; ++phase) {
        uint64_t stamp = uint64_t(job) * 1000003u + uint64_t(phase);
        slots[i * 16] = stamp;
        pool.barrier();
        for (unsigned j = 0; j < n; ++j)
          if (slots[j * 16] != stamp)
            errors.fetch_add(1);
        pool.barrier(); // before anyone overwrites its slot
      }
    });
  EXPECT_EQ(errors.load(), 0u) << threads << " threads, spin " << spinNanos;
}

TEST(ThreadPool, BarrierStressFittingTheMachine) {
  barrierStress(std::min(4u, ThreadPool::availableCpus()), -1, 2000, 20);
}

TEST(ThreadPool, BarrierStressOversubscribed) {
  // More threads than cores: the pool must not spin the machine to a halt.
  barrierStress(ThreadPool::availableCpus() * 3, -1, 300, 10);
}

TEST(ThreadPool, BarrierStressWithoutSpinning) {
  // Straight to the futex: every wake-up goes through the kernel.
  barrierStress(3, 0, 500, 10);
}

TEST(ThreadPool, SpinBudgetGrowsAfterShortWaitsAndHalvesAfterLongOnes) {
  exec::SpinPolicy policy{100'000, 8};
  exec::SpinBudget budget;
  // At the floor, a 15 us wait that ended in a sleep: spin for 30 next time.
  budget.learn(1'000, 15'000, policy);
  EXPECT_EQ(budget.nanos, 30'000u);
  // A wait the spin ended: twice the spin.
  budget.learn(30'000, 2'000, policy);
  EXPECT_EQ(budget.nanos, 60'000u);
  // Never past the policy's.
  budget.learn(60'000, 90'000, policy);
  EXPECT_EQ(budget.nanos, 100'000u);
  // Waits longer than the policy's spin halve it, down to a microsecond.
  budget.learn(100'000, 500'000, policy);
  EXPECT_EQ(budget.nanos, 50'000u);
  for (int i = 0; i < 20; ++i)
    budget.learn(budget.nanos, 5'000'000, policy);
  EXPECT_EQ(budget.nanos, 1'000u);
  // A policy below a microsecond is its own floor.
  exec::SpinPolicy tiny{500, 8};
  budget.learn(500, 5'000'000, tiny);
  EXPECT_EQ(budget.nanos, 500u);
}

TEST(ThreadPool, DefaultThreadCountFollowsTheAffinityMask) {
  EXPECT_GE(ThreadPool::availableCpus(), 1u);
  EXPECT_EQ(ThreadPool::defaultThreadCount(),
            std::min(ThreadPool::availableCpus(), 64u));
}


//===----------------------------------------------------------------------===//
// Region
//===----------------------------------------------------------------------===//

/// The machine's own transparent huge page size, read here independently
/// of Region: 0 where the kernel has none or they are switched off.
uint64_t kernelHugePageBytes() {
  std::ifstream enabled("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string setting((std::istreambuf_iterator<char>(enabled)),
                      std::istreambuf_iterator<char>());
  if (!enabled || setting.find("[never]") != std::string::npos)
    return 0;
  std::ifstream pmd("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
  uint64_t bytes = 0;
  return pmd >> bytes ? bytes : 0;
}

TEST(Region, HugeRegionsLieOnHugePageBoundariesAndKeepTheirBytes) {
  const uint64_t huge = kernelHugePageBytes();
  EXPECT_EQ(exec::Region::hugePageBytes(), huge <= (32u << 20) ? huge : 0);
  const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  // Regions of one huge page and more start on a huge page's boundary;
  // smaller ones on a page's.
  for (uint64_t size : {uint64_t(4096 * 3 + 17), uint64_t(5 << 20) + 12345}) {
    SCOPED_TRACE(size);
    exec::Region region;
    std::string error;
    ASSERT_TRUE(region.allocate(size, "test region", error)) << error;
    EXPECT_EQ(region.size(), size);
    const uint64_t align = exec::Region::hugePageBytes() &&
                                   size >= exec::Region::hugePageBytes()
                               ? exec::Region::hugePageBytes()
                               : page;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(region.data()) % align, 0u);
    // Zero-filled; written and collapsed, it keeps every byte.
    uint8_t *p = region.data();
    EXPECT_EQ(std::count(p, p + size, uint8_t(0)), int64_t(size));
    for (uint64_t i = 0; i < size; ++i)
      p[i] = uint8_t(i * 131 + (i >> 12));
    region.collapseHugePages();
    uint64_t wrong = 0;
    for (uint64_t i = 0; i < size; ++i)
      wrong += p[i] != uint8_t(i * 131 + (i >> 12));
    EXPECT_EQ(wrong, 0u);
    region.zero();
    EXPECT_EQ(std::count(p, p + size, uint8_t(0)), int64_t(size));
  }
}
//===----------------------------------------------------------------------===//
// The fake model's bundle, written by hand (no compiler in runtime tests)
//===----------------------------------------------------------------------===//

/// Weights in [-0.5, 0.5), a SplitMix hash of (tensor, index).
float weight(uint64_t tensor, uint64_t index) {
  uint64_t z = tensor * 0x9e3779b97f4a7c15ull + index + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return float(z >> 40) / float(1 << 24) - 0.5f;
}
constexpr uint64_t kEmbd = 1, kOutput = 2;
uint64_t expertTensor(int layer, int expert, int part) {
  return 100 + uint64_t(layer) * 1000 + uint64_t(expert) * 10 + part;
}

struct BundleSpec {
  /// The metadata's layout_hash field, or none.
  std::string layoutHash = std::to_string(FAKE_LAYOUT_HASH);
  bool withLayoutHash = true;
  uint32_t layers = FAKE_LAYERS, experts = FAKE_EXPERTS;
  /// Padding after the resident tensors (a size the code does not expect).
  uint64_t residentPadding = 0;
  uint32_t ioBlock = 4096;
};

uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

void put(std::vector<uint8_t> &file, uint64_t offset, const void *data,
         uint64_t size) {
  if (file.size() < offset + size)
    file.resize(offset + size);
  std::memcpy(file.data() + offset, data, size);
}

std::vector<uint8_t> floats(uint64_t tensor, uint64_t count) {
  std::vector<uint8_t> bytes(count * 4);
  for (uint64_t i = 0; i < count; ++i) {
    float w = weight(tensor, i);
    std::memcpy(bytes.data() + i * 4, &w, 4);
  }
  return bytes;
}

/// Writes the bundle runtime/abi/moec_bundle.h describes for FakeModel.c.
void writeBundle(const std::string &path, const BundleSpec &spec = {}) {
  std::string metadata =
      R"({"model":{"family":"fake","layers":[1,2,{"x":"}"}]},)"
      R"("plan":{"all_experts_resident":true})";
  if (spec.withLayoutHash)
    metadata += R"(,"layout_hash":)" + spec.layoutHash;
  metadata += "}";
  std::string strings = "token_embd.weightoutput.weight";

  moec_bundle_header h{};
  std::memcpy(h.magic, MOEC_BUNDLE_MAGIC, 8);
  h.version_major = MOEC_BUNDLE_VERSION_MAJOR;
  h.version_minor = MOEC_BUNDLE_VERSION_MINOR;
  h.header_size = sizeof(h);
  h.io_block = spec.ioBlock;
  h.tables_offset = sizeof(h);
  h.metadata_size = metadata.size();
  h.strings_size = strings.size();
  h.tensor_count = 2;
  h.expert_count = spec.layers * spec.experts;
  uint64_t tablesEnd = h.tables_offset + metadata.size() + strings.size() +
                       2 * sizeof(moec_bundle_tensor) +
                       h.expert_count * sizeof(moec_bundle_expert);
  h.resident_offset = alignUp(tablesEnd, spec.ioBlock);

  std::vector<uint8_t> file;
  moec_bundle_tensor tensors[2]{};
  std::vector<uint8_t> data[2] = {floats(kEmbd, FAKE_VOCAB * FAKE_HIDDEN),
                                  floats(kOutput, FAKE_HIDDEN * FAKE_VOCAB)};
  uint64_t offset = h.resident_offset;
  for (int i = 0; i < 2; ++i) {
    moec_bundle_tensor &t = tensors[i];
    t.name_offset = i == 0 ? 0 : 17;
    t.name_size = i == 0 ? 17 : 13;
    t.type = 0; // F32
    t.n_dims = 2;
    t.dims[0] = i == 0 ? FAKE_HIDDEN : FAKE_VOCAB;
    t.dims[1] = i == 0 ? FAKE_VOCAB : FAKE_HIDDEN;
    offset = alignUp(offset, MOEC_BUNDLE_TENSOR_ALIGNMENT);
    t.offset = offset;
    t.size = data[i].size();
    t.checksum = bundle::checksum(data[i].data(), t.size);
    put(file, offset, data[i].data(), t.size);
    offset += t.size;
  }
  offset += spec.residentPadding;
  h.resident_size = offset - h.resident_offset;

  std::vector<moec_bundle_expert> experts;
  offset = alignUp(offset, spec.ioBlock);
  for (uint32_t l = 0; l < spec.layers; ++l)
    for (uint32_t x = 0; x < spec.experts; ++x) {
      moec_bundle_expert e{};
      e.layer = l;
      e.expert = x;
      e.offset = offset;
      e.size = FAKE_EXTENT_BYTES;
      std::vector<uint8_t> extent;
      for (int p = 0; p < 3; ++p) {
        std::vector<uint8_t> part =
            floats(expertTensor(int(l), int(x), p), FAKE_HIDDEN);
        e.part_offset[p] = uint64_t(p) * FAKE_PART_BYTES;
        e.part_size[p] = FAKE_PART_BYTES;
        extent.insert(extent.end(), part.begin(), part.end());
      }
      e.checksum = bundle::checksum(extent.data(), extent.size());
      put(file, offset, extent.data(), extent.size());
      experts.push_back(e);
      offset = alignUp(offset + e.size, spec.ioBlock);
    }
  h.file_size = alignUp(std::max<uint64_t>(offset, file.size()), spec.ioBlock);
  file.resize(h.file_size);

  std::vector<uint8_t> tables(metadata.begin(), metadata.end());
  tables.insert(tables.end(), strings.begin(), strings.end());
  auto append = [&](const void *p, size_t n) {
    auto *b = static_cast<const uint8_t *>(p);
    tables.insert(tables.end(), b, b + n);
  };
  append(tensors, sizeof(tensors));
  append(experts.data(), experts.size() * sizeof(moec_bundle_expert));
  h.tables_checksum = bundle::checksum(tables.data(), tables.size());
  put(file, h.tables_offset, tables.data(), tables.size());
  h.header_checksum = 0;
  h.header_checksum = bundle::checksum(&h, sizeof(h));
  put(file, 0, &h, sizeof(h));

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char *>(file.data()),
            std::streamsize(file.size()));
  ASSERT_TRUE(out.good()) << path;
}

/// Flips one byte of `path` at `offset`.
void corrupt(const std::string &path, uint64_t offset) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(std::streamoff(offset));
  char c;
  f.get(c);
  f.seekp(std::streamoff(offset));
  f.put(char(c ^ 0x5a));
}

/// The fake model computed one token at a time, independently of
/// FakeModel.c: n x vocab logits.
std::vector<float> reference(const std::vector<int32_t> &tokens) {
  std::vector<float> kv(size_t(FAKE_LAYERS) * FAKE_CONTEXT * FAKE_HIDDEN);
  std::vector<float> logits;
  for (size_t p = 0; p < tokens.size(); ++p) {
    int32_t tok = tokens[p], pos = int32_t(p);
    float x[FAKE_HIDDEN], y[FAKE_HIDDEN];
    for (int h = 0; h < FAKE_HIDDEN; ++h) {
      float shift = 0.001f * float(pos);
      x[h] = weight(kEmbd, uint64_t(tok) * FAKE_HIDDEN + h) + shift;
    }
    for (int l = 0; l < FAKE_LAYERS; ++l) {
      int32_t chosen[FAKE_USED];
      fake_route(tok, pos, l, chosen);
      float *layerKv = kv.data() + size_t(l) * FAKE_CONTEXT * FAKE_HIDDEN;
      for (int h = 0; h < FAKE_HIDDEN; ++h)
        layerKv[pos * FAKE_HIDDEN + h] = x[h];
      for (int h = 0; h < FAKE_HIDDEN; ++h) {
        float sum = 0.0f;
        for (int q = 0; q <= pos; ++q)
          sum += layerKv[q * FAKE_HIDDEN + h];
        float att = sum / float(pos + 1);
        float v = x[h], squashed = v / (1.0f + std::fabs(v));
        float moe = 0.0f;
        for (int k = 0; k < FAKE_USED; ++k) {
          float gate = weight(expertTensor(l, chosen[k], 0), h);
          float up = weight(expertTensor(l, chosen[k], 1), h);
          float down = weight(expertTensor(l, chosen[k], 2), h);
          float term = gate * squashed;
          term = term + up;
          term = term * down;
          moe = moe + term;
        }
        float r = 0.5f * att;
        r = v + r;
        y[h] = r + moe;
      }
      std::memcpy(x, y, sizeof(x));
    }
    for (int v = 0; v < FAKE_VOCAB; ++v) {
      float sum = 0.0f;
      for (int h = 0; h < FAKE_HIDDEN; ++h) {
        float prod = x[h] * weight(kOutput, uint64_t(h) * FAKE_VOCAB + v);
        sum = sum + prod;
      }
      logits.push_back(sum);
    }
  }
  return logits;
}

std::vector<int32_t> prompt(size_t n, int32_t seed = 0) {
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < n; ++i)
    tokens.push_back(int32_t((i * 7 + size_t(seed) * 13 + 3) % FAKE_VOCAB));
  return tokens;
}

//===----------------------------------------------------------------------===//
// The model, through the C interface
//===----------------------------------------------------------------------===//

struct ModelCloser {
  void operator()(moec_model *m) const { moec_model_close(m); }
};
using ModelPtr = std::unique_ptr<moec_model, ModelCloser>;

class Exec : public ::testing::Test {
protected:
  void SetUp() override {
    char pattern[] = "/var/tmp/moec-exec-XXXXXX";
    ASSERT_TRUE(mkdtemp(pattern));
    dir = pattern;
    bundlePath = dir + "/model.moeb";
    writeBundle(bundlePath);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  ModelPtr open(int threads, std::string *error = nullptr,
                const std::string &path = "") {
    moec_model_options opts{};
    std::string p = path.empty() ? bundlePath : path;
    opts.bundle_path = p.c_str();
    opts.threads = threads;
    char message[1024] = "unset";
    ModelPtr m(moec_model_open(&opts, message, sizeof(message)));
    if (error)
      *error = message;
    else
      EXPECT_TRUE(m) << message;
    return m;
  }

  /// Every row of logits for `tokens`, appended one token at a time.
  std::vector<float> oneAtATime(moec_model *m,
                                const std::vector<int32_t> &tokens) {
    std::vector<float> rows;
    for (int32_t t : tokens) {
      EXPECT_EQ(moec_model_decode(m, t), 0) << moec_model_error(m);
      const float *l = moec_model_logits(m);
      rows.insert(rows.end(), l, l + FAKE_VOCAB);
    }
    return rows;
  }

  std::string dir, bundlePath;
};

void expectNear(const std::vector<float> &got, const std::vector<float> &want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::fabs(want[i])))
        << "row " << i / FAKE_VOCAB << " entry " << i % FAKE_VOCAB;
}

void expectBitwiseEqual(const std::vector<float> &got,
                        const std::vector<float> &want) {
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)),
            0);
}

TEST_F(Exec, MatchesTheReference) {
  std::vector<int32_t> tokens = prompt(17);
  std::vector<float> want = reference(tokens);
  for (int threads : {1, 3}) {
    ModelPtr m = open(threads);
    ASSERT_TRUE(m);
    EXPECT_EQ(moec_model_vocab_size(m.get()), FAKE_VOCAB);
    EXPECT_EQ(moec_model_context_length(m.get()), FAKE_CONTEXT);
    EXPECT_EQ(moec_model_thread_count(m.get()), threads);
    EXPECT_EQ(moec_model_logits(m.get()), nullptr);
    std::vector<float> got(tokens.size() * FAKE_VOCAB);
    ASSERT_EQ(moec_model_eval_all(m.get(), tokens.data(),
                                  int64_t(tokens.size()), got.data()),
              0)
        << moec_model_error(m.get());
    EXPECT_EQ(moec_model_position(m.get()), 17);
    expectNear(got, want);
  }
}

TEST_F(Exec, BatchedPrefillEqualsOneTokenAtATime) {
  // 13 tokens: batches of 5, 5, 3 (max_batch is 5), then more on top.
  std::vector<int32_t> tokens = prompt(13, 1), more = prompt(9, 2);
  ModelPtr batched = open(2), single = open(2);
  ASSERT_TRUE(batched && single);
  std::vector<float> all(tokens.size() * FAKE_VOCAB);
  ASSERT_EQ(moec_model_eval_all(batched.get(), tokens.data(), 13, all.data()),
            0);
  std::vector<float> allMore(more.size() * FAKE_VOCAB);
  ASSERT_EQ(moec_model_eval_all(batched.get(), more.data(), 9, allMore.data()),
            0);
  all.insert(all.end(), allMore.begin(), allMore.end());
  std::vector<int32_t> everything = tokens;
  everything.insert(everything.end(), more.begin(), more.end());
  expectBitwiseEqual(all, oneAtATime(single.get(), everything));
  EXPECT_EQ(moec_model_position(batched.get()), 22);
}

TEST_F(Exec, PrefillKeepsTheLastRowOfEvalAll) {
  std::vector<int32_t> tokens = prompt(12, 3);
  ModelPtr a = open(2), b = open(2);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(moec_model_prefill(a.get(), tokens.data(), 12), 0);
  std::vector<float> all(tokens.size() * FAKE_VOCAB);
  ASSERT_EQ(moec_model_eval_all(b.get(), tokens.data(), 12, all.data()), 0);
  std::vector<float> last(all.end() - FAKE_VOCAB, all.end());
  const float *la = moec_model_logits(a.get()),
              *lb = moec_model_logits(b.get());
  expectBitwiseEqual(std::vector<float>(la, la + FAKE_VOCAB), last);
  expectBitwiseEqual(std::vector<float>(lb, lb + FAKE_VOCAB), last);
}

TEST_F(Exec, ThreadCountDoesNotChangeABit) {
  std::vector<int32_t> tokens = prompt(31, 4);
  std::vector<float> want;
  for (int threads : {1, 2, 4, 7}) {
    ModelPtr m = open(threads);
    ASSERT_TRUE(m);
    std::vector<float> got(tokens.size() * FAKE_VOCAB);
    ASSERT_EQ(moec_model_eval_all(m.get(), tokens.data(), 31, got.data()), 0);
    // And decode on top.
    std::vector<float> more = oneAtATime(m.get(), prompt(6, 5));
    got.insert(got.end(), more.begin(), more.end());
    if (want.empty())
      want = got;
    else
      expectBitwiseEqual(got, want);
  }
}

TEST_F(Exec, ResetStartsAgain) {
  std::vector<int32_t> tokens = prompt(11, 6);
  ModelPtr m = open(2);
  ASSERT_TRUE(m);
  std::vector<float> first(11 * FAKE_VOCAB), second(11 * FAKE_VOCAB);
  ASSERT_EQ(moec_model_eval_all(m.get(), tokens.data(), 11, first.data()), 0);
  moec_model_reset(m.get());
  EXPECT_EQ(moec_model_position(m.get()), 0);
  EXPECT_EQ(moec_model_logits(m.get()), nullptr);
  ASSERT_EQ(moec_model_eval_all(m.get(), tokens.data(), 11, second.data()), 0);
  expectBitwiseEqual(first, second);
}

TEST_F(Exec, ContextOverflowIsRefusedWhole) {
  ModelPtr m = open(2);
  ASSERT_TRUE(m);
  std::vector<int32_t> tokens = prompt(FAKE_CONTEXT - 3, 7);
  ASSERT_EQ(moec_model_prefill(m.get(), tokens.data(), int64_t(tokens.size())),
            0);
  std::vector<float> before(moec_model_logits(m.get()),
                            moec_model_logits(m.get()) + FAKE_VOCAB);
  // Four more do not fit in the three positions left: nothing is appended.
  std::vector<int32_t> four = prompt(4, 8);
  EXPECT_NE(moec_model_prefill(m.get(), four.data(), 4), 0);
  EXPECT_EQ(std::string(moec_model_error(m.get())),
            "the context holds 48 tokens: 45 are in it and 4 more do not fit");
  EXPECT_EQ(moec_model_position(m.get()), FAKE_CONTEXT - 3);
  expectBitwiseEqual(
      std::vector<float>(moec_model_logits(m.get()),
                         moec_model_logits(m.get()) + FAKE_VOCAB),
      before);
  // Three do; then not one more.
  ASSERT_EQ(moec_model_prefill(m.get(), four.data(), 3), 0);
  EXPECT_EQ(moec_model_position(m.get()), FAKE_CONTEXT);
  EXPECT_NE(moec_model_decode(m.get(), 1), 0);
  EXPECT_NE(std::string(moec_model_error(m.get())).find("context holds 48"),
            std::string::npos);
  // A success clears the error.
  moec_model_reset(m.get());
  EXPECT_EQ(moec_model_decode(m.get(), 1), 0);
  EXPECT_STREQ(moec_model_error(m.get()), "");
}

TEST_F(Exec, TokensOutsideTheVocabularyAreRefused) {
  ModelPtr m = open(1);
  ASSERT_TRUE(m);
  int32_t tokens[] = {1, 2, FAKE_VOCAB};
  EXPECT_NE(moec_model_prefill(m.get(), tokens, 3), 0);
  EXPECT_STREQ(moec_model_error(m.get()),
               "token 2 is 40, outside the vocabulary (0..39)");
  EXPECT_NE(moec_model_decode(m.get(), -1), 0);
  EXPECT_EQ(moec_model_position(m.get()), 0);
  EXPECT_NE(moec_model_prefill(m.get(), tokens, -1), 0);
  EXPECT_EQ(moec_model_prefill(m.get(), tokens, 0), 0);
}

TEST_F(Exec, CountsAcquiresAndReleases) {
  std::string error;
  exec::ModelOptions options;
  options.bundlePath = bundlePath;
  options.threads = 2;
  auto model = exec::Model::open(exec::linkedModelCode(), options, error);
  ASSERT_TRUE(model) << error;
  std::vector<int32_t> tokens = prompt(7, 9);
  ASSERT_TRUE(model->eval(tokens.data(), 7, nullptr, error)) << error;
  // The fake acquires each expert a batch routes to once per layer.
  uint64_t expected = 0;
  std::vector<uint64_t> perExpert(FAKE_LAYERS * FAKE_EXPERTS);
  for (size_t begin = 0; begin < tokens.size(); begin += FAKE_MAX_BATCH)
    for (int l = 0; l < FAKE_LAYERS; ++l) {
      std::set<int32_t> used;
      for (size_t i = begin;
           i < std::min(tokens.size(), begin + FAKE_MAX_BATCH); ++i) {
        int32_t chosen[FAKE_USED];
        fake_route(tokens[i], int32_t(i), l, chosen);
        used.insert(chosen, chosen + FAKE_USED);
      }
      expected += used.size();
      for (int32_t e : used)
        ++perExpert[size_t(l) * FAKE_EXPERTS + size_t(e)];
    }
  exec::ModelStats stats = model->getStats();
  EXPECT_EQ(stats.forwardCalls, 2u);
  EXPECT_EQ(stats.tokens, 7u);
  EXPECT_EQ(stats.expertAcquires, expected);
  EXPECT_EQ(stats.expertReleases, expected);
  EXPECT_EQ(stats.acquiresPerExpert, perExpert);
}

//===----------------------------------------------------------------------===//
// Checks at open
//===----------------------------------------------------------------------===//

std::string openError(const exec::ModelCode &code, const std::string &path) {
  std::string error;
  exec::ModelOptions options;
  options.bundlePath = path;
  options.threads = 2;
  auto model = exec::Model::open(code, options, error);
  EXPECT_FALSE(model);
  return error;
}

exec::ModelCode codeWith(std::vector<int64_t> &info, int index, int64_t value) {
  info.assign(moec_model_info, moec_model_info + MOEC_INFO_COUNT);
  info[size_t(index)] = value;
  return {info.data(), &_mlir_ciface_moec_model_forward};
}

TEST_F(Exec, RefusesCodeOfAnotherAbi) {
  std::vector<int64_t> info;
  std::string error =
      openError(codeWith(info, MOEC_INFO_ABI_MAJOR, 7), bundlePath);
  EXPECT_EQ(error, "model code: artifact was compiled for ABI 7." +
                       std::to_string(MOEC_ABI_VERSION_MINOR) +
                       " but this runtime implements ABI " +
                       std::to_string(MOEC_ABI_VERSION_MAJOR) + "." +
                       std::to_string(MOEC_ABI_VERSION_MINOR) +
                       ": recompile the model with a moec that matches this "
                       "runtime");
  error = openError(codeWith(info, MOEC_INFO_ABI_MINOR, 99), bundlePath);
  EXPECT_NE(error.find("needs ABI 0.99"), std::string::npos) << error;
  EXPECT_NE(error.find("update the runtime"), std::string::npos) << error;
  error = openError(codeWith(info, MOEC_INFO_ABI_MAJOR, -1), bundlePath);
  EXPECT_NE(error.find("is not a version"), std::string::npos) << error;
}

TEST_F(Exec, RefusesProcessorStateItCannotEnable) {
  std::vector<int64_t> info;
  std::string error =
      openError(codeWith(info, MOEC_INFO_CPU_STATE, 6), bundlePath);
  EXPECT_EQ(error, "model code: processor state 6 has bits no moec ABI "
                   "defines: the code is damaged or not moec model code");
}

TEST_F(Exec, RefusesAnInfoTableOutOfRange) {
  std::vector<int64_t> info;
  EXPECT_EQ(openError(codeWith(info, MOEC_INFO_MAX_BATCH, 0), bundlePath),
            "model code: the batch size is 0, outside 1..1048576: the code is "
            "damaged or not moec model code");
}

TEST_F(Exec, RefusesABundleOfAnotherCompile) {
  BundleSpec spec;
  spec.layoutHash = "12345";
  writeBundle(bundlePath, spec);
  std::string error;
  EXPECT_FALSE(open(1, &error));
  EXPECT_EQ(error, bundlePath +
                       ": bundle layout hash 12345 does not match "
                       "the compiled code's " +
                       std::to_string(FAKE_LAYOUT_HASH) +
                       ": the code and the bundle come from different "
                       "compiles (use the model.moeb written with this "
                       "program)");
}

TEST_F(Exec, RefusesABundleWithoutLayoutHash) {
  BundleSpec spec;
  spec.withLayoutHash = false;
  writeBundle(bundlePath, spec);
  std::string error;
  EXPECT_FALSE(open(1, &error));
  EXPECT_NE(error.find(bundlePath + ": offset 96: the metadata has no "
                                    "\"layout_hash\""),
            std::string::npos)
      << error;
  spec.withLayoutHash = true;
  spec.layoutHash = "1.5e3";
  writeBundle(bundlePath, spec);
  EXPECT_FALSE(open(1, &error));
  EXPECT_NE(error.find("\"layout_hash\" is 1.5e3, not an integer"),
            std::string::npos)
      << error;
}

TEST_F(Exec, RefusesAResidentSegmentOfAnotherSize) {
  BundleSpec spec;
  spec.residentPadding = 64;
  writeBundle(bundlePath, spec);
  std::string error;
  EXPECT_FALSE(open(1, &error));
  EXPECT_NE(error.find("the resident segment is 5184 bytes but the compiled "
                       "code expects 5120"),
            std::string::npos)
      << error;
}

TEST_F(Exec, RefusesExpertTablesOfAnotherShape) {
  BundleSpec spec;
  spec.layers = FAKE_LAYERS + 1;
  writeBundle(bundlePath, spec);
  std::string error;
  EXPECT_FALSE(open(1, &error));
  EXPECT_NE(error.find("the bundle has an extent for layer 3 expert 0 but the "
                       "compiled code has 3 layers of 4 experts"),
            std::string::npos)
      << error;
  spec.layers = FAKE_LAYERS;
  spec.experts = FAKE_EXPERTS - 1;
  writeBundle(bundlePath, spec);
  EXPECT_FALSE(open(1, &error));
  EXPECT_EQ(error, bundlePath + ": the bundle has no extent for layer 0 "
                                "expert 3, which the compiled code routes to");
}

TEST_F(Exec, ChecksumFailuresNameTheOffset) {
  std::string error;
  auto b = bundle::Bundle::open(bundlePath, error);
  ASSERT_TRUE(b) << error;
  const moec_bundle_expert *e = b->findExpert(2, 1);
  const moec_bundle_tensor *t = b->findTensor("output.weight");
  ASSERT_TRUE(e && t);
  uint64_t extentOffset = e->offset, tensorOffset = t->offset;
  b.reset();

  corrupt(bundlePath, extentOffset + 70);
  EXPECT_FALSE(open(3, &error));
  EXPECT_EQ(error, bundlePath + ": offset " + std::to_string(extentOffset) +
                       ": extent of layer 2 expert 1: checksum mismatch");

  writeBundle(bundlePath);
  corrupt(bundlePath, tensorOffset + 5);
  EXPECT_FALSE(open(3, &error));
  EXPECT_EQ(error, bundlePath + ": offset " + std::to_string(tensorOffset) +
                       ": tensor 'output.weight': checksum mismatch");

  writeBundle(bundlePath);
  corrupt(bundlePath, 30);
  EXPECT_FALSE(open(3, &error));
  EXPECT_NE(error.find("header checksum mismatch"), std::string::npos) << error;
}

TEST_F(Exec, RefusesBadOptions) {
  std::string error;
  EXPECT_FALSE(open(1, &error, dir + "/missing.moeb"));
  EXPECT_EQ(error, dir + "/missing.moeb: cannot open: No such file or "
                         "directory");
  EXPECT_FALSE(open(513, &error));
  EXPECT_EQ(error, "threads: 513 is out of range (0..512, 0 for the default)");
  moec_model_options opts{};
  char message[128];
  EXPECT_FALSE(moec_model_open(&opts, message, sizeof(message)));
  EXPECT_STREQ(message, "bundle_path: not set");
  opts.bundle_path = bundlePath.c_str();
  opts.io_mode = 3;
  EXPECT_FALSE(moec_model_open(&opts, message, sizeof(message)));
  EXPECT_STREQ(message, "io_mode: 3 is out of range (0 auto, 1 io_uring, "
                        "2 pread)");
  opts.io_mode = 0;
  opts.cache_policy = 2;
  EXPECT_FALSE(moec_model_open(&opts, message, sizeof(message)));
  EXPECT_STREQ(message, "cache_policy: 2 is out of range (0 LRU, 1 LFU)");
  opts.cache_policy = 0;
  // A short buffer gets a truncated, terminated message.
  opts.io_mode = 0;
  opts.threads = -1;
  EXPECT_FALSE(moec_model_open(&opts, message, 8));
  EXPECT_STREQ(message, "threads");
  EXPECT_FALSE(moec_model_open(nullptr, nullptr, 0));
}

TEST_F(Exec, DefaultThreadsAreTheAvailableCpus) {
  ModelPtr m = open(0);
  ASSERT_TRUE(m);
  EXPECT_EQ(unsigned(moec_model_thread_count(m.get())),
            ThreadPool::defaultThreadCount());
}

//===----------------------------------------------------------------------===//
// The ABI's contract on the callbacks
//===----------------------------------------------------------------------===//

extern "C" void acquireOutOfRange(moec_rt_context_t *ctx, int64_t t, int64_t,
                                  int64_t, int64_t, moec_buffer_t *,
                                  moec_buffer_t *, moec_buffer_t *,
                                  moec_buffer_t *, moec_buffer_t *,
                                  moec_buffer_t *, moec_buffer_t *) {
  if (t == 0)
    moec_rt_expert_acquire(ctx, FAKE_LAYERS, 0);
  moec_rt_barrier(ctx);
}

extern "C" void acquireWithoutRelease(moec_rt_context_t *ctx, int64_t t,
                                      int64_t, int64_t, int64_t,
                                      moec_buffer_t *, moec_buffer_t *,
                                      moec_buffer_t *, moec_buffer_t *,
                                      moec_buffer_t *, moec_buffer_t *,
                                      moec_buffer_t *) {
  if (t == 0) {
    moec_rt_expert_acquire(ctx, 1, 2);
    moec_rt_expert_acquire(ctx, 2, 3);
    moec_rt_expert_release(ctx, 1, 2);
  }
}

extern "C" void releaseTwice(moec_rt_context_t *ctx, int64_t t, int64_t,
                             int64_t, int64_t, moec_buffer_t *, moec_buffer_t *,
                             moec_buffer_t *, moec_buffer_t *, moec_buffer_t *,
                             moec_buffer_t *, moec_buffer_t *) {
  if (t == 0) {
    moec_rt_expert_acquire(ctx, 0, 1);
    moec_rt_expert_release(ctx, 0, 1);
    moec_rt_expert_release(ctx, 0, 1);
  }
}

extern "C" void acquireOnThreadOne(moec_rt_context_t *ctx, int64_t t, int64_t,
                                   int64_t, int64_t, moec_buffer_t *,
                                   moec_buffer_t *, moec_buffer_t *,
                                   moec_buffer_t *, moec_buffer_t *,
                                   moec_buffer_t *, moec_buffer_t *) {
  moec_rt_barrier(ctx);
  if (t == 1)
    moec_rt_expert_acquire(ctx, 0, 0);
  moec_rt_barrier(ctx);
}

extern "C" void tryAcquireOnThreadOne(moec_rt_context_t *ctx, int64_t t,
                                      int64_t, int64_t, int64_t,
                                      moec_buffer_t *, moec_buffer_t *,
                                      moec_buffer_t *, moec_buffer_t *,
                                      moec_buffer_t *, moec_buffer_t *,
                                      moec_buffer_t *) {
  moec_rt_barrier(ctx);
  if (t == 1)
    moec_rt_expert_try_acquire(ctx, 0, 0);
  moec_rt_barrier(ctx);
}

extern "C" void tryAcquireOutOfRange(moec_rt_context_t *ctx, int64_t t,
                                     int64_t, int64_t, int64_t,
                                     moec_buffer_t *, moec_buffer_t *,
                                     moec_buffer_t *, moec_buffer_t *,
                                     moec_buffer_t *, moec_buffer_t *,
                                     moec_buffer_t *) {
  if (t == 0)
    moec_rt_expert_try_acquire(ctx, 0, FAKE_EXPERTS);
  moec_rt_barrier(ctx);
}

// A try-acquire that finds its expert is an acquire: it wants a release.
extern "C" void tryAcquireWithoutRelease(moec_rt_context_t *ctx, int64_t t,
                                         int64_t, int64_t, int64_t,
                                         moec_buffer_t *, moec_buffer_t *,
                                         moec_buffer_t *, moec_buffer_t *,
                                         moec_buffer_t *, moec_buffer_t *,
                                         moec_buffer_t *) {
  if (t == 0 && moec_rt_expert_try_acquire(ctx, 2, 1) >= 0) {
    moec_rt_expert_acquire(ctx, 0, 1);
    moec_rt_expert_release(ctx, 0, 1);
  }
}

std::string callError(decltype(&_mlir_ciface_moec_model_forward) forward,
                      const std::string &path) {
  std::string error;
  exec::ModelOptions options;
  options.bundlePath = path;
  options.threads = 2;
  auto model = exec::Model::open({moec_model_info, forward}, options, error);
  EXPECT_TRUE(model) << error;
  if (!model)
    return error;
  int32_t token = 1;
  EXPECT_FALSE(model->eval(&token, 1, nullptr, error));
  EXPECT_EQ(model->getPosition(), 0);
  // The failure is not sticky: the next call is judged on its own.
  std::string again;
  EXPECT_FALSE(model->eval(&token, 1, nullptr, again));
  EXPECT_EQ(again, error);
  return error;
}

TEST_F(Exec, ReportsCodeThatBreaksTheContract) {
  EXPECT_EQ(callError(acquireOutOfRange, bundlePath),
            "compiled code called moec_rt_expert_acquire for layer 3 expert 0, "
            "but the model has 3 layers of 4 experts");
  EXPECT_EQ(callError(acquireWithoutRelease, bundlePath),
            "compiled code returned with layer 2 expert 3 acquired and not "
            "released");
  EXPECT_EQ(callError(releaseTwice, bundlePath),
            "compiled code released layer 0 expert 1, which it had not "
            "acquired");
  EXPECT_EQ(callError(acquireOnThreadOne, bundlePath),
            "compiled code called moec_rt_expert_acquire on thread 1: the ABI "
            "allows it on thread 0 only");
  EXPECT_EQ(callError(tryAcquireOnThreadOne, bundlePath),
            "compiled code called moec_rt_expert_try_acquire on thread 1: the "
            "ABI allows it on thread 0 only");
  EXPECT_EQ(callError(tryAcquireOutOfRange, bundlePath),
            "compiled code called moec_rt_expert_try_acquire for layer 0 "
            "expert 4, but the model has 3 layers of 4 experts");
  EXPECT_EQ(callError(tryAcquireWithoutRelease, bundlePath),
            "compiled code returned with layer 2 expert 1 acquired and not "
            "released");
}

//===----------------------------------------------------------------------===//
// model-run and a C program, linked from the combined archive
//===----------------------------------------------------------------------===//

struct Result {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Result runProgram(const std::string &program, const std::string &args,
                  const std::string &dir) {
  std::string errPath = dir + "/stderr.txt";
  std::string command = program + " " + args + " 2>" + errPath;
  Result r;
  FILE *p = popen(command.c_str(), "r");
  EXPECT_TRUE(p) << command;
  if (!p)
    return r;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), p)) > 0)
    r.out.append(buffer, n);
  int status = pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(errPath);
  return r;
}

Result modelRun(const std::string &args, const std::string &dir) {
  return runProgram(MOEC_FAKE_MODEL_RUN, args, dir);
}

/// What model-run should print: greedy ids after `tokens`.
std::string greedy(moec_model *m, const std::vector<int32_t> &tokens, int n) {
  EXPECT_EQ(moec_model_prefill(m, tokens.data(), int64_t(tokens.size())), 0);
  std::string line;
  for (int i = 0; i < n; ++i) {
    const float *l = moec_model_logits(m);
    int32_t best = 0;
    for (int v = 1; v < FAKE_VOCAB; ++v)
      if (l[v] > l[best])
        best = v;
    line += (i ? " " : "") + std::to_string(best);
    if (i + 1 < n)
      EXPECT_EQ(moec_model_decode(m, best), 0);
  }
  return line + "\n";
}

TEST_F(Exec, ModelRunPrintsGreedyIdsAndTimings) {
  ModelPtr m = open(1);
  ASSERT_TRUE(m);
  std::string want = greedy(m.get(), {5, 9, 2, 30, 7, 1, 1}, 12);
  Result r = modelRun("-m " + bundlePath +
                          " --prompt-ids 5,9,2,30,7,1,1 "
                          "-n 12 -t 3",
                      dir);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, want);
  EXPECT_NE(r.err.find("prompt eval time = "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" /     7 tokens ("), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ms per token,"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tokens per second)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("eval time = "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" /    11 runs   ("), std::string::npos) << r.err;
  // --flag=value and -n 0 (an empty line).
  r = modelRun("--model=" + bundlePath + " --prompt-ids=3 -n 0", dir);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "\n");
}

TEST_F(Exec, ModelRunWritesTheLogitsOfEveryStep) {
  std::string out = dir + "/logits.f32";
  Result r = modelRun("-m " + bundlePath +
                          " --prompt-ids 4,8,15,16,23,8,4 -n "
                          "5 --logits-out " +
                          out,
                      dir);
  ASSERT_EQ(r.status, 0) << r.err;
  // 7 prompt rows, then the 4 generated tokens that were evaluated.
  std::vector<int32_t> tokens = {4, 8, 15, 16, 23, 8, 4};
  std::string ids = r.out;
  for (size_t start = 0, i = 0; i < 4; ++i) {
    size_t end = ids.find(' ', start);
    tokens.push_back(std::stoi(ids.substr(start, end - start)));
    start = end + 1;
  }
  std::string bytes = slurp(out);
  ASSERT_EQ(bytes.size(), tokens.size() * FAKE_VOCAB * 4);
  std::vector<float> got(tokens.size() * FAKE_VOCAB);
  std::memcpy(got.data(), bytes.data(), bytes.size());
  expectNear(got, reference(tokens));
  // Renamed into place: no temporary left behind.
  for (const auto &entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos)
        << entry.path();
}

TEST_F(Exec, ModelRunFindsTheBundleBesideItself) {
  std::string copy = dir + "/model-run";
  std::filesystem::copy_file(MOEC_FAKE_MODEL_RUN, copy);
  ModelPtr m = open(1);
  ASSERT_TRUE(m);
  Result r = runProgram(copy, "--prompt-ids 1,2,3 -n 4", dir);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, greedy(m.get(), {1, 2, 3}, 4));
  std::filesystem::remove(bundlePath);
  r = runProgram(copy, "--prompt-ids 1,2,3 -n 4", dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "model-run: error: " + bundlePath +
                       ": cannot open: No such file or directory\n");
}

TEST_F(Exec, ModelRunRefusesBadArgumentsWithExitCodeOne) {
  std::string m = "-m " + bundlePath + " ";
  struct Case {
    std::string args, message;
  } cases[] = {
      {m + "--prompt-ids 1 --frobnicate",
       "unknown option '--frobnicate' (model-run --help lists them)"},
      {m + "--prompt-ids 1 -t 0", "-t: 0 is out of range (1..512)"},
      {m + "--prompt-ids 1 -t many", "-t: 'many' is not an integer"},
      {m + "--prompt-ids 1 -n -2", "-n: -2 is out of range (-1..2147483647)"},
      {m + "--prompt-ids 1 -n", "-n: needs a value"},
      {m + "--prompt-ids 1,,2", "--prompt-ids: '' is not an integer"},
      {m + "--prompt-ids 1,40", "--prompt-ids: 40 is outside the vocabulary "
                                "(0..39)"},
      {m + "--prompt-ids 1 -n 49",
       "-n: the prompt (1 tokens) and 49 generated tokens do not fit the "
       "model's context of 48"},
      {m, "no prompt: give -p TEXT, -f FILE, --prompt-ids LIST or -cnv "
          "(model-run --help)"},
      // The fake model's bundle carries no vocabulary.
      {m + "-p hello", "text prompts need the tokenizer: the model was "
                       "compiled without a tokenizer (moec said why when it "
                       "compiled the model): pass token ids with "
                       "--prompt-ids"},
      {"-m " + dir + "/nope.moeb --prompt-ids 1",
       dir + "/nope.moeb: cannot open: No such file or directory"},
  };
  for (const Case &c : cases) {
    Result r = modelRun(c.args, dir);
    EXPECT_EQ(r.status, 1) << c.args;
    EXPECT_EQ(r.out, "") << c.args;
    EXPECT_EQ(r.err, "model-run: error: " + c.message + "\n") << c.args;
  }
  // -n 48 fits: the last generated token is never evaluated.
  Result r = modelRun(m + "--prompt-ids 1 -n 48", dir);
  EXPECT_EQ(r.status, 0) << r.err;
  r = modelRun("--help", dir);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.rfind("usage: model-run", 0), 0u) << r.out;
}

TEST_F(Exec, ACProgramLinksWithTheCombinedArchiveAlone) {
  Result r = runProgram(MOEC_EXEC_C_PROGRAM, bundlePath, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7};
  ModelPtr m = open(1);
  ASSERT_TRUE(m);
  ASSERT_EQ(moec_model_prefill(m.get(), tokens.data(), 7), 0);
  std::string want = "7";
  char hex[64];
  for (int v = 0; v < FAKE_VOCAB; ++v) {
    std::snprintf(hex, sizeof(hex), " %a",
                  double(moec_model_logits(m.get())[v]));
    want += hex;
  }
  EXPECT_EQ(r.out, want + "\n");
}

} // namespace
