//===- ModelApi.cpp - The C interface of a compiled model -----------------===//
//
// runtime/exec/model.h over moec::exec::Model, for the code linked into the
// program. Apart from Model.cpp so that the Model class can be used (by
// tests, by a host of several models) without compiled code linked in.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/model.h"

#include "runtime/exec/AtomicFile.h"
#include "runtime/exec/Model.h"
#include "runtime/exec/ThreadPool.h"
#include "runtime/sampling/Sampler.h"
#include "runtime/tokenizer/Tokenizer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <sys/resource.h>
#include <unistd.h>

using moec::exec::Model;

struct moec_model {
  std::unique_ptr<Model> model;
  std::string error;
  /// Built on first use from the bundle's vocabulary; null with
  /// `tokenizerError` when there is none or it cannot run.
  std::unique_ptr<moec::tokenizer::Tokenizer> tokenizer;
  std::string tokenizerError;
  bool tokenizerTried = false;
};

struct moec_sampler {
  moec::sampling::Sampler sampler;
};

namespace moec::exec {
ModelCode linkedModelCode() {
  return ModelCode{moec_model_info, &_mlir_ciface_moec_model_forward};
}
} // namespace moec::exec

namespace {
moec_model *fail(const std::string &message, char *error, size_t size) {
  if (error && size)
    std::snprintf(error, size, "%s", message.c_str());
  return nullptr;
}

int eval(moec_model *m, const int32_t *tokens, int64_t n, float *logits) {
  if (!m)
    return -1;
  m->error.clear();
  return m->model->eval(tokens, n, logits, m->error) ? 0 : -1;
}
} // namespace

extern "C" {

moec_model *moec_model_open(const moec_model_options *opts, char *error,
                            size_t error_size) {
  if (!opts)
    return fail("no options (null pointer)", error, error_size);
  if (!opts->bundle_path || !*opts->bundle_path)
    return fail("bundle_path: not set", error, error_size);
  if (opts->threads < 0 ||
      opts->threads > int(moec::exec::ThreadPool::kMaxThreads))
    return fail("threads: " + std::to_string(opts->threads) +
                    " is out of range (0.." +
                    std::to_string(moec::exec::ThreadPool::kMaxThreads) +
                    ", 0 for the default)",
                error, error_size);
  if (opts->io_mode < 0 || opts->io_mode > 2)
    return fail("io_mode: " + std::to_string(opts->io_mode) +
                    " is out of range (0 auto, 1 io_uring, 2 pread)",
                error, error_size);
  if (opts->cache_policy < 0 || opts->cache_policy > 1)
    return fail("cache_policy: " + std::to_string(opts->cache_policy) +
                    " is out of range (0 LRU, 1 LFU)",
                error, error_size);
  moec::exec::ModelOptions options;
  options.bundlePath = opts->bundle_path;
  options.threads = static_cast<unsigned>(opts->threads);
  options.memoryBudget = opts->memory_budget;
  options.evictionPolicy = opts->cache_policy == 1
                               ? moec::cache::EvictionPolicy::LFU
                               : moec::cache::EvictionPolicy::LRU;
  options.ioEngine = opts->io_mode == 1   ? moec::io::EngineKind::IoUring
                     : opts->io_mode == 2 ? moec::io::EngineKind::PreadPool
                                          : moec::io::EngineKind::Auto;
  options.prefetch = opts->no_prefetch == 0;
  if (opts->max_batch < 0)
    return fail("max_batch: " + std::to_string(opts->max_batch) +
                    " is negative (0 for the compiled batch)",
                error, error_size);
  options.maxBatch = opts->max_batch;
  std::string message;
  std::unique_ptr<Model> model =
      Model::open(moec::exec::linkedModelCode(), options, message);
  if (!model)
    return fail(message, error, error_size);
  if (error && error_size)
    error[0] = '\0';
  moec_model *m = new moec_model();
  m->model = std::move(model);
  return m;
}

int moec_model_prefill(moec_model *m, const int32_t *tokens, int64_t n) {
  return eval(m, tokens, n, nullptr);
}

int moec_model_decode(moec_model *m, int32_t token) {
  return eval(m, &token, 1, nullptr);
}

int moec_model_eval_all(moec_model *m, const int32_t *tokens, int64_t n,
                        float *logits_out) {
  if (m && n > 0 && !logits_out) {
    m->error = "no logits buffer (null pointer)";
    return -1;
  }
  return eval(m, tokens, n, logits_out);
}

const float *moec_model_logits(const moec_model *m) {
  return m ? m->model->getLogits() : nullptr;
}

void moec_model_reset(moec_model *m) {
  if (m) {
    m->error.clear();
    m->model->reset();
  }
}

int64_t moec_model_vocab_size(const moec_model *m) {
  return m ? m->model->getVocabSize() : 0;
}

int64_t moec_model_context_length(const moec_model *m) {
  return m ? m->model->getContextLength() : 0;
}

int64_t moec_model_position(const moec_model *m) {
  return m ? m->model->getPosition() : 0;
}

int moec_model_thread_count(const moec_model *m) {
  return m ? int(m->model->getThreadCount()) : 0;
}

const char *moec_model_error(const moec_model *m) {
  return m ? m->error.c_str() : "no model (null pointer)";
}

void moec_model_close(moec_model *m) { delete m; }

void moec_model_record_routing(moec_model *m, int on) {
  if (m)
    m->model->setRecordRouting(on != 0);
}

void moec_model_start_calibration(moec_model *m) {
  if (m)
    m->model->startCalibration();
}

int moec_model_write_calibration(moec_model *m, const char *path) {
  if (!m)
    return -1;
  if (!path || !*path) {
    m->error = "no path to write the calibration to";
    return -1;
  }
  return m->model->writeCalibration(path, m->error) ? 0 : -1;
}

void moec_model_set_calibration_source(moec_model *m, const char *json) {
  if (m && json)
    m->model->setCalibrationSource(json);
}

void moec_model_collect_hessians(moec_model *m, int layer) {
  if (m)
    m->model->collectHessians(layer);
}

int moec_model_write_hessians(moec_model *m, const char *path) {
  if (!m)
    return -1;
  if (!path || !*path) {
    m->error = "no path to write the Hessians to";
    return -1;
  }
  return m->model->writeHessians(path, m->error) ? 0 : -1;
}

int moec_model_write_stats(moec_model *m, const char *path,
                           const char *extra_members) {
  if (!m)
    return -1;
  if (!path || !*path) {
    m->error = "no statistics file name";
    return -1;
  }
  const Model &model = *m->model;
  int64_t layers = model.getInfo(MOEC_INFO_LAYER_COUNT);
  int64_t experts = model.getInfo(MOEC_INFO_EXPERT_COUNT);
  int64_t topK = model.getInfo(MOEC_INFO_EXPERTS_USED);
  const auto &records = model.getRoutingRecords();
  const auto &ids = model.getRoutingIds();
  size_t k = records.empty() ? size_t(topK) : ids.size() / records.size();

  std::vector<std::vector<uint64_t>> counts(
      size_t(layers), std::vector<uint64_t>(size_t(experts), 0));
  // (sequence, position) -> per layer, the record's index.
  std::map<std::pair<uint32_t, int32_t>, std::vector<int64_t>> tokens;
  for (size_t r = 0; r < records.size(); ++r) {
    const moec::exec::RoutingRecord &rec = records[r];
    for (size_t j = 0; j < k; ++j) {
      int32_t e = ids[r * k + j];
      if (rec.layer >= 0 && rec.layer < layers && e >= 0 && e < experts)
        ++counts[size_t(rec.layer)][size_t(e)];
    }
    auto &slot = tokens[{rec.sequence, rec.position}];
    if (slot.empty())
      slot.assign(size_t(layers), -1);
    if (rec.layer >= 0 && rec.layer < layers)
      slot[size_t(rec.layer)] = int64_t(r);
  }
  // P(an expert of token t is also an expert of token t + 1), per layer,
  // over consecutive positions of one sequence.
  std::vector<uint64_t> reused(size_t(layers), 0), pairs(size_t(layers), 0);
  for (auto it = tokens.begin(); it != tokens.end(); ++it) {
    auto next = tokens.find({it->first.first, it->first.second + 1});
    if (next == tokens.end())
      continue;
    for (int64_t l = 0; l < layers; ++l) {
      int64_t a = it->second[size_t(l)], b = next->second[size_t(l)];
      if (a < 0 || b < 0)
        continue;
      std::set<int32_t> now(ids.begin() + a * int64_t(k),
                            ids.begin() + (a + 1) * int64_t(k));
      for (size_t j = 0; j < k; ++j)
        reused[size_t(l)] += now.count(ids[size_t(b) * k + j]);
      pairs[size_t(l)] += k;
    }
  }

  std::string json = "{\n";
  if (extra_members && *extra_members)
    json += std::string("  ") + extra_members + ",\n";
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.6g", v);
    return std::string(buf);
  };
  json += "  \"model\": {\"layers\": " + std::to_string(layers) +
          ", \"experts\": " + std::to_string(experts) +
          ", \"top_k\": " + std::to_string(topK) +
          ", \"vocab\": " + std::to_string(model.getVocabSize()) +
          ", \"context\": " + std::to_string(model.getContextLength()) +
          ", \"threads\": " + std::to_string(model.getThreadCount()) +
          ", \"weight_bytes\": " + std::to_string(model.getWeightBytes()) +
          "},\n";
  moec::exec::ModelStats stats = model.getStats();
  json += "  \"experts\": {\"plan\": \"" +
          std::string(stats.streaming ? "streaming" : "all-resident") +
          "\", \"acquires\": " + std::to_string(stats.expertAcquires) +
          ", \"forward_calls\": " + std::to_string(stats.forwardCalls) +
          ", \"tokens\": " + std::to_string(stats.tokens) +
          ", \"forward_seconds\": " + num(stats.forwardSeconds);
  if (stats.streaming) {
    auto ratio = [&](uint64_t a, uint64_t b) {
      return b ? num(double(a) / double(b)) : std::string("null");
    };
    json += ",\n    \"cache_bytes\": " + std::to_string(stats.cacheBytes) +
            ", \"io_engine\": \"" + stats.ioEngine + "\"" +
            ",\n    \"hits\": " + std::to_string(stats.cacheHits) +
            ", \"misses\": " + std::to_string(stats.cacheMisses) +
            ", \"hit_rate\": " +
            ratio(stats.cacheHits, stats.cacheHits + stats.cacheMisses) +
            ", \"evictions\": " + std::to_string(stats.evictions) +
            ",\n    \"reads\": " + std::to_string(stats.reads) +
            ", \"bytes_read\": " + std::to_string(stats.bytesRead) +
            ", \"stall_seconds\": " + num(stats.stallSeconds) +
            ",\n    \"overlap\": {\"experts_computed_during_reads\": " +
            std::to_string(stats.expertsOverlapped) +
            ", \"experts_waited_for\": " +
            std::to_string(stats.expertsWaitedFor) + "}" +
            ", \"read_bytes_per_forward_second\": " +
            (stats.forwardSeconds > 0
                 ? num(double(stats.bytesRead) / stats.forwardSeconds)
                 : std::string("null")) +
            ",\n    \"prefetch\": {\"predicted\": " +
            std::to_string(stats.predicted) +
            ", \"predicted_used\": " + std::to_string(stats.predictedUsed) +
            ", \"precision\": " + ratio(stats.predictedUsed, stats.predicted) +
            ", \"recall\": " +
            ratio(stats.predictedUsed, stats.usedAfterPrediction) +
            ", \"wasted_bytes\": " +
            std::to_string(stats.wastedPrefetchBytes) + "}";
  }
  json += "},\n";
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  // What the process read from and wrote to storage (/proc/self/io:
  // bytes that went to the block layer, so the page cache does not count).
  uint64_t storageRead = 0, storageWritten = 0;
  if (FILE *io = std::fopen("/proc/self/io", "r")) {
    char line[128];
    while (std::fgets(line, sizeof(line), io)) {
      unsigned long long v;
      if (std::sscanf(line, "read_bytes: %llu", &v) == 1)
        storageRead = v;
      else if (std::sscanf(line, "write_bytes: %llu", &v) == 1)
        storageWritten = v;
    }
    std::fclose(io);
  }
  json += "  \"memory\": {\"peak_rss_bytes\": " +
          std::to_string(uint64_t(usage.ru_maxrss) * 1024) +
          ", \"budget_bytes\": " + std::to_string(model.getBudgetBytes()) +
          ", \"storage_read_bytes\": " + std::to_string(storageRead) +
          ", \"storage_written_bytes\": " + std::to_string(storageWritten) +
          "},\n";
  json += "  \"routing\": {\n    \"tokens\": " +
          std::to_string(tokens.size()) + ",\n    \"counts\": [";
  for (int64_t l = 0; l < layers; ++l) {
    json += l ? ",\n      [" : "\n      [";
    for (int64_t e = 0; e < experts; ++e)
      json += (e ? ", " : "") + std::to_string(counts[size_t(l)][size_t(e)]);
    json += "]";
  }
  json += "],\n    \"popularity\": [";
  for (int64_t l = 0; l < layers; ++l) {
    json += l ? ",\n      [" : "\n      [";
    for (int64_t e = 0; e < experts; ++e)
      json += (e ? ", " : "") +
              num(tokens.empty() ? 0.0
                                 : double(counts[size_t(l)][size_t(e)]) /
                                       double(tokens.size()));
    json += "]";
  }
  json += "],\n    \"repeat_probability\": [";
  for (int64_t l = 0; l < layers; ++l)
    json += (l ? ", " : "") +
            (pairs[size_t(l)] ? num(double(reused[size_t(l)]) /
                                    double(pairs[size_t(l)]))
                              : std::string("null"));
  json += "],\n    \"trace\": [";
  for (size_t r = 0; r < records.size(); ++r) {
    json += r ? ",\n      [" : "\n      [";
    json += std::to_string(records[r].sequence) + ", " +
            std::to_string(records[r].position) + ", " +
            std::to_string(records[r].layer);
    for (size_t j = 0; j < k; ++j)
      json += ", " + std::to_string(ids[r * k + j]);
    json += "]";
  }
  json += "]\n  }\n}\n";

  return moec::exec::writeFileAtomically(path, json, m->error) ? 0 : -1;
}

} // extern "C"

namespace {
const moec::tokenizer::Tokenizer *getTokenizer(moec_model *m) {
  if (!m)
    return nullptr;
  if (!m->tokenizerTried) {
    m->tokenizerTried = true;
    const std::string &bytes = m->model->getVocabularyBytes();
    moec::tokenizer::Vocabulary vocabulary;
    std::string error;
    if (bytes.empty())
      m->tokenizerError = "the model was compiled without a tokenizer (moec "
                          "said why when it compiled the model)";
    else if (!moec::tokenizer::Vocabulary::deserialize(bytes, vocabulary,
                                                       error))
      m->tokenizerError = "the bundle's vocabulary is unreadable: " + error;
    else if (!(m->tokenizer = moec::tokenizer::Tokenizer::create(
                   std::move(vocabulary), error)))
      m->tokenizerError = "the bundle's tokenizer cannot run: " + error;
  }
  if (!m->tokenizer)
    m->error = m->tokenizerError;
  return m->tokenizer.get();
}
} // namespace

extern "C" {

int moec_model_has_tokenizer(moec_model *m) {
  return getTokenizer(m) != nullptr;
}

int64_t moec_model_tokenize(moec_model *m, const char *text, size_t length,
                            int add_special, int parse_special,
                            int32_t *tokens, int64_t max_tokens) {
  const moec::tokenizer::Tokenizer *tok = getTokenizer(m);
  if (!tok)
    return -1;
  const moec::tokenizer::Vocabulary &v = tok->getVocabulary();
  std::vector<int32_t> ids =
      tok->encode(std::string_view(text ? text : "", text ? length : 0),
                  add_special && v.addBos, parse_special != 0);
  if (add_special && v.addEos && v.eos >= 0)
    ids.push_back(v.eos);
  int64_t n = static_cast<int64_t>(ids.size());
  if (tokens && max_tokens > 0)
    std::memcpy(tokens, ids.data(),
                sizeof(int32_t) * size_t(std::min(n, max_tokens)));
  return n;
}

int64_t moec_model_token_to_piece(moec_model *m, int32_t token, int special,
                                  char *buffer, size_t size) {
  const moec::tokenizer::Tokenizer *tok = getTokenizer(m);
  if (!tok)
    return -1;
  if (token < 0 || size_t(token) >= tok->getVocabulary().tokens.size()) {
    m->error = "token " + std::to_string(token) + " is outside the vocabulary";
    return -1;
  }
  std::string piece = tok->decodeToken(token, special != 0);
  if (buffer && size)
    std::memcpy(buffer, piece.data(), std::min(size, piece.size()));
  return static_cast<int64_t>(piece.size());
}

int32_t moec_model_token_bos(moec_model *m) {
  const moec::tokenizer::Tokenizer *tok = getTokenizer(m);
  return tok ? tok->getVocabulary().bos : -1;
}

int32_t moec_model_token_eos(moec_model *m) {
  const moec::tokenizer::Tokenizer *tok = getTokenizer(m);
  return tok ? tok->getVocabulary().eos : -1;
}

int moec_model_token_is_end(moec_model *m, int32_t token) {
  const moec::tokenizer::Tokenizer *tok = getTokenizer(m);
  return tok && tok->isEndOfGeneration(token);
}

const char *moec_model_chat_template(moec_model *m) {
  const moec::tokenizer::Tokenizer *tok = getTokenizer(m);
  return tok ? tok->getVocabulary().chatTemplate.c_str() : "";
}

moec_sampler_params moec_sampler_default_params(void) {
  moec::sampling::SamplerOptions o;
  return moec_sampler_params{o.temperature, o.topK,          o.topP,
                             o.minP,        o.repeatPenalty, o.repeatLastN,
                             o.seed};
}

moec_sampler *moec_sampler_new(const moec_sampler_params *p, char *error,
                               size_t error_size) {
  if (!p) {
    fail("no sampler parameters (null pointer)", error, error_size);
    return nullptr;
  }
  moec::sampling::SamplerOptions o;
  o.temperature = p->temperature;
  o.topK = p->top_k;
  o.topP = p->top_p;
  o.minP = p->min_p;
  o.repeatPenalty = p->repeat_penalty;
  o.repeatLastN = p->repeat_last_n;
  o.seed = p->seed;
  std::string invalid = o.validate();
  if (!invalid.empty()) {
    fail(invalid, error, error_size);
    return nullptr;
  }
  if (error && error_size)
    error[0] = '\0';
  return new moec_sampler{moec::sampling::Sampler(o)};
}

int32_t moec_sampler_sample(moec_sampler *s, const float *logits, int64_t n) {
  return s && logits && n > 0 ? s->sampler.sample(logits, size_t(n)) : -1;
}

void moec_sampler_accept(moec_sampler *s, int32_t token) {
  if (s)
    s->sampler.accept(token);
}

void moec_sampler_free(moec_sampler *s) { delete s; }

} // extern "C"
