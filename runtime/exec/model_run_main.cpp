//===- model_run_main.cpp - out/model-run, the compiled model's program ---===//
//
// The main of `model-run`, which moec links with the compiled model code
// and the runtime into out/model-run. Three ways to run:
//
//   model-run -p TEXT | -f FILE [-n N] [sampling flags]
//       prints the prompt, then the generated text as it is generated, then
//       prompt and generation tokens/s the way llama.cpp does (stderr);
//   model-run -cnv [-p SYSTEM]
//       an interactive chat in the model's own chat format;
//   model-run --prompt-ids 1,2,3 [-n N] [--logits-out F]
//       token ids in, the generated ids out on one line (tests, scripts);
//   model-run --perplexity -f FILE [-c N]
//       llama.cpp's perplexity protocol: non-overlapping windows of N
//       tokens, BOS first, the second half of each window scored;
//   model-run --perplexity -f FILE [-c N] --kl-divergence-base BASE
//                          [--kl-divergence]
//       as llama-perplexity: also writes the scored positions'
//       log-probabilities to BASE, or (--kl-divergence) reads them and
//       compares this model with the one that wrote them (KL divergence,
//       same top token, ln(PPL ratio), delta p).
//
// Errors are one line naming the flag or file, exit code 1. The model,
// tokenizer and sampler are used through the C interface (model.h) only:
// this is also its example.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/model.h"
#include "runtime/tokenizer/ChatTemplate.h"
#include "runtime/tokenizer/Tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

const char *const kUsage =
    "usage: model-run [options] (-p TEXT | -f FILE | -cnv | --prompt-ids "
    "LIST)\n"
    "\n"
    "Runs the compiled model: continues a prompt, chats, or scores a text.\n"
    "\n"
    "  -m, --model BUNDLE     the weight bundle (default: model.moeb beside\n"
    "                         this program)\n"
    "  -p, --prompt TEXT      the prompt (with -cnv: the system message)\n"
    "  -f, --file FILE        the prompt, read from FILE\n"
    "  --prompt-ids LIST      the prompt as comma-separated token ids; prints\n"
    "                         the generated ids instead of text\n"
    "  -n, --n-predict N      tokens to generate (default 128; -1: until the\n"
    "                         end-of-text token or a full context)\n"
    "  -cnv, --conversation   interactive chat in the model's chat format\n"
    "  --perplexity           score the text of -f (llama.cpp's protocol)\n"
    "  -c, --ctx-size N       --perplexity window (default 512, at most the\n"
    "                         model's context; with --kl-divergence: BASE's)\n"
    "  --kl-divergence-base FILE\n"
    "                         with --perplexity: write the base model's\n"
    "                         log-probabilities at every scored position to\n"
    "                         FILE (float32, vocabulary x positions)\n"
    "  --kl-divergence        read --kl-divergence-base instead, and compare\n"
    "                         this model with the base: KL divergence, same\n"
    "                         top token, ln(PPL(Q)/PPL(base)), delta p\n"
    "  --temp T               temperature (default 0.8; 0: greedy)\n"
    "  --top-k N              keep the N most likely tokens (default 40; 0: "
    "all)\n"
    "  --top-p P              keep the most likely tokens up to mass P "
    "(default 0.95)\n"
    "  --min-p P              drop tokens below P x the most likely "
    "(default 0.05)\n"
    "  --repeat-penalty X     penalise the last --repeat-last-n tokens "
    "(default 1: off)\n"
    "  --repeat-last-n N      (default 64)\n"
    "  -s, --seed N           sampling seed (default: random, printed)\n"
    "  --ignore-eos           do not stop at the end-of-text token\n"
    "  -b, --batch-size N     most tokens per forward call (default: the\n"
    "                         compiled batch)\n"
    "  -t, --threads N        compute threads (default: the CPUs available,\n"
    "                         at most 64)\n"
    "  --memory-budget SIZE   memory for weights, KV cache and buffers (K, M,\n"
    "                         G suffixes; default: the compiled plan's); below\n"
    "                         what all experts need, experts stream from the\n"
    "                         bundle through a cache of what is left\n"
    "  --cache-policy P       the expert cache's eviction: lru (default), lfu\n"
    "  --io ENGINE            expert reads: auto (default), uring, pread\n"
    "  --no-prefetch          do not read the next layer's predicted experts\n"
    "                         early\n"
    "  --stats FILE           write statistics as JSON: routing (counts,\n"
    "                         popularity, reuse, trace), expert cache and\n"
    "                         reads, prefetch precision/recall, timings\n"
    "  --chunks N             --perplexity: score at most N windows\n"
    "  --hessian-layer N --hessian-out FILE\n"
    "                         write GPTQ's X^T X of the inputs of layer N's\n"
    "                         weights (-1: the others); instrumented models\n"
    "  --calibration-out FILE write calibration statistics (calib.dat) of\n"
    "                         the run; needs a model compiled with\n"
    "                         instrumentation (what moec calibrate does)\n"
    "  --logits-out FILE      with --prompt-ids: write the float32 logits\n"
    "                         after every token evaluated\n"
    "  --generated-logits-out FILE\n"
    "                         with --prompt-ids: write the float32 logits\n"
    "                         each generated id is chosen from (the prompt's\n"
    "                         last position, then each step's), the prompt\n"
    "                         run as a plain prefill that computes only the\n"
    "                         last position's\n"
    "  --warmup               with --prompt-ids: first an untimed pass (the\n"
    "                         prompt and 4 decode steps, then a reset), as\n"
    "                         benchmarks give llama.cpp; page faults of the\n"
    "                         buffers and cold caches leave the timed run\n"
    "  --repeat N             with --prompt-ids: N timed passes (a reset\n"
    "                         between), each generating the same ids (an\n"
    "                         error otherwise); the timing lines give the\n"
    "                         fastest prompt eval and eval, one more line\n"
    "                         every pass's speeds\n"
    "  -h, --help             this text\n";

[[noreturn]] void die(const std::string &message) {
  std::fflush(stdout);
  std::fprintf(stderr, "model-run: error: %s\n", message.c_str());
  std::exit(1);
}

/// A decimal integer in [lo, hi], all of `text`; dies naming `flag`.
long long parseInt(const std::string &flag, const std::string &text,
                   long long lo, long long hi) {
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    die(flag + ": '" + text + "' is not an integer");
  if (v < lo || v > hi)
    die(flag + ": " + text + " is out of range (" + std::to_string(lo) + ".." +
        std::to_string(hi) + ")");
  return v;
}

/// A finite number in [lo, hi] (open at the low end when `openLow`).
float parseFloat(const std::string &flag, const std::string &text, double lo,
                 double hi, bool openLow = false) {
  errno = 0;
  char *end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    die(flag + ": '" + text + "' is not a number");
  if (v < lo || v > hi || (openLow && v == lo))
    die(flag + ": " + text + " is out of range (" + (openLow ? "(" : "[") +
        std::to_string(lo).substr(0, 4) + ", " +
        std::to_string(hi).substr(0, 4) + "])");
  return float(v);
}

/// A byte count with an optional K, M, G or T suffix (powers of 1024).
uint64_t parseSize(const std::string &flag, const std::string &text) {
  errno = 0;
  char *end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  std::string suffix = end ? end : "";
  double scale = 1;
  if (suffix == "K" || suffix == "KiB" || suffix == "k")
    scale = 1024.0;
  else if (suffix == "M" || suffix == "MiB")
    scale = 1024.0 * 1024;
  else if (suffix == "G" || suffix == "GiB")
    scale = 1024.0 * 1024 * 1024;
  else if (suffix == "T" || suffix == "TiB")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!suffix.empty())
    die(flag + ": '" + text + "' is not a size (a number with K, M, G or T)");
  if (text.empty() || end == text.c_str() || !(v >= 0) || !std::isfinite(v))
    die(flag + ": '" + text + "' is not a size (a number with K, M, G or T)");
  return uint64_t(v * scale);
}

std::string readFile(const std::string &flag, const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    die(flag + ": cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    die(flag + ": cannot read " + path + ": " + std::strerror(errno));
  return text.str();
}

std::string defaultBundlePath() {
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0)
    die("cannot find this program's directory (/proc/self/exe): pass the "
        "bundle with -m");
  std::string path(exe, size_t(n));
  return path.substr(0, path.rfind('/') + 1) + "model.moeb";
}

double millisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

/// llama.cpp's line: "... = X ms / N tokens ( Y ms per token, Z tokens per
/// second)".
void printTiming(const char *label, double ms, long long n, const char *unit) {
  std::fprintf(stderr,
               "model-run: %16s = %10.2f ms / %5lld %-6s (%8.2f ms per token, "
               "%8.2f tokens per second)\n",
               label, ms, n, unit, n ? ms / double(n) : 0.0,
               ms > 0 ? 1e3 * double(n) / ms : 0.0);
}

/// A file a flag names (--logits-out, --kl-divergence-base), written under
/// a temporary name and renamed when complete: a failed run leaves no
/// half-written file behind.
class OutputFile {
public:
  void open(const std::string &flagName, const std::string &target) {
    flag = flagName;
    path = target;
    temporary = target + ".tmp" + std::to_string(::getpid());
    file = std::fopen(temporary.c_str(), "wb");
    if (!file)
      die(flag + ": cannot write " + temporary + ": " + std::strerror(errno));
  }
  bool isOpen() const { return file != nullptr; }
  void write(const float *rows, int64_t count) {
    writeBytes(rows, size_t(count) * sizeof(float));
  }
  void writeBytes(const void *data, size_t bytes) {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                  "output files hold the host's numbers as little-endian");
    if (std::fwrite(data, 1, bytes, file) != bytes)
      fail("cannot write " + temporary + ": " + std::strerror(errno));
  }
  void commit() {
    if (!file)
      return;
    int rc = std::fclose(file);
    file = nullptr;
    if (rc != 0)
      fail("cannot write " + temporary + ": " + std::strerror(errno));
    if (std::rename(temporary.c_str(), path.c_str()) != 0)
      fail("cannot rename " + temporary + " to " + path + ": " +
           std::strerror(errno));
  }
  /// Removes the partial file; call before dying.
  void discard() {
    if (file) {
      std::fclose(file);
      file = nullptr;
    }
    if (!temporary.empty())
      std::remove(temporary.c_str());
  }

private:
  [[noreturn]] void fail(const std::string &message) {
    discard();
    die(flag + ": " + message);
  }
  std::string flag, path, temporary;
  FILE *file = nullptr;
};

struct Options {
  std::string bundle, logitsPath, generatedLogitsPath, prompt, promptFlag,
      statsPath, mode, klBasePath, calibrationPath, hessianPath, promptPath;
  std::vector<int32_t> promptIds;
  bool havePrompt = false, haveIds = false, chat = false, perplexity = false,
       ignoreEos = false, haveSeed = false, haveWindow = false,
       klDivergence = false;
  long long predict = 128, threads = 0, window = 512, maxChunks = 0,
            hessianLayer = -2;
  uint64_t memoryBudget = 0;
  int cachePolicy = 0, ioMode = 0, batch = 0;
  bool noPrefetch = false, warmup = false;
  long long repeat = 1;
  moec_sampler_params sampling = moec_sampler_default_params();
};

Options parseOptions(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    bool inlineValue = false;
    // --flag=value as well as --flag value.
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      inlineValue = true;
    }
    auto takeValue = [&]() -> std::string {
      if (inlineValue)
        return value;
      if (i + 1 >= argc)
        die(arg + ": needs a value");
      return argv[++i];
    };
    auto flagOnly = [&]() {
      if (inlineValue)
        die(arg + ": takes no value");
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "-m" || arg == "--model") {
      o.bundle = takeValue();
      if (o.bundle.empty())
        die(arg + ": needs a value");
    } else if (arg == "-p" || arg == "--prompt") {
      if (o.havePrompt)
        die(arg + ": the prompt is already given (" + o.promptFlag + ")");
      o.prompt = takeValue();
      o.havePrompt = true;
      o.promptFlag = arg;
    } else if (arg == "-f" || arg == "--file") {
      if (o.havePrompt)
        die(arg + ": the prompt is already given (" + o.promptFlag + ")");
      std::string path = takeValue();
      o.prompt = readFile(arg, path);
      o.promptPath = path;
      o.havePrompt = true;
      o.promptFlag = arg;
    } else if (arg == "--prompt-ids") {
      std::string list = takeValue();
      o.haveIds = true;
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos)
          comma = list.size();
        std::string id = list.substr(start, comma - start);
        o.promptIds.push_back(
            int32_t(parseInt("--prompt-ids", id, 0, INT32_MAX)));
        start = comma + 1;
      }
    } else if (arg == "-n" || arg == "--n-predict") {
      o.predict = parseInt(arg, takeValue(), -1, INT32_MAX);
    } else if (arg == "-t" || arg == "--threads") {
      o.threads = parseInt(arg, takeValue(), 1, 512);
    } else if (arg == "-b" || arg == "--batch-size") {
      o.batch = int(parseInt(arg, takeValue(), 1, INT32_MAX));
    } else if (arg == "-c" || arg == "--ctx-size") {
      o.window = parseInt(arg, takeValue(), 4, INT32_MAX);
      o.haveWindow = true;
    } else if (arg == "--temp") {
      o.sampling.temperature = parseFloat(arg, takeValue(), 0, 100);
    } else if (arg == "--top-k") {
      o.sampling.top_k = int32_t(parseInt(arg, takeValue(), 0, INT32_MAX));
    } else if (arg == "--top-p") {
      o.sampling.top_p = parseFloat(arg, takeValue(), 0, 1, /*openLow=*/true);
    } else if (arg == "--min-p") {
      o.sampling.min_p = parseFloat(arg, takeValue(), 0, 1);
    } else if (arg == "--repeat-penalty") {
      o.sampling.repeat_penalty =
          parseFloat(arg, takeValue(), 0, 100, /*openLow=*/true);
    } else if (arg == "--repeat-last-n") {
      o.sampling.repeat_last_n =
          int32_t(parseInt(arg, takeValue(), 0, INT32_MAX));
    } else if (arg == "-s" || arg == "--seed") {
      std::string text = takeValue();
      errno = 0;
      char *end = nullptr;
      unsigned long long seed = std::strtoull(text.c_str(), &end, 10);
      if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE)
        die(arg + ": '" + text + "' is not a seed (0.." +
            std::to_string(UINT64_MAX) + ")");
      o.sampling.seed = seed;
      o.haveSeed = true;
    } else if (arg == "--ignore-eos") {
      flagOnly();
      o.ignoreEos = true;
    } else if (arg == "-cnv" || arg == "--conversation") {
      flagOnly();
      o.chat = true;
    } else if (arg == "--perplexity") {
      flagOnly();
      o.perplexity = true;
    } else if (arg == "--kl-divergence-base") {
      o.klBasePath = takeValue();
      if (o.klBasePath.empty())
        die(arg + ": needs a value");
    } else if (arg == "--kl-divergence") {
      flagOnly();
      o.klDivergence = true;
    } else if (arg == "--memory-budget") {
      o.memoryBudget = parseSize(arg, takeValue());
      if (o.memoryBudget == 0)
        die(arg + ": must be more than 0");
    } else if (arg == "--cache-policy") {
      std::string v = takeValue();
      if (v == "lru")
        o.cachePolicy = 0;
      else if (v == "lfu")
        o.cachePolicy = 1;
      else
        die(arg + ": '" + v + "' is not a policy (lru, lfu)");
    } else if (arg == "--io") {
      std::string v = takeValue();
      if (v == "auto")
        o.ioMode = 0;
      else if (v == "uring")
        o.ioMode = 1;
      else if (v == "pread")
        o.ioMode = 2;
      else
        die(arg + ": '" + v + "' is not an I/O engine (auto, uring, pread)");
    } else if (arg == "--no-prefetch") {
      flagOnly();
      o.noPrefetch = true;
    } else if (arg == "--warmup") {
      flagOnly();
      o.warmup = true;
    } else if (arg == "--repeat") {
      o.repeat = parseInt(arg, takeValue(), 1, 1000000);
    } else if (arg == "--logits-out") {
      o.logitsPath = takeValue();
      if (o.logitsPath.empty())
        die(arg + ": needs a value");
    } else if (arg == "--generated-logits-out") {
      o.generatedLogitsPath = takeValue();
      if (o.generatedLogitsPath.empty())
        die(arg + ": needs a value");
    } else if (arg == "--stats") {
      o.statsPath = takeValue();
      if (o.statsPath.empty())
        die(arg + ": needs a value");
    } else if (arg == "--calibration-out") {
      o.calibrationPath = takeValue();
      if (o.calibrationPath.empty())
        die(arg + ": needs a value");
    } else if (arg == "--hessian-out") {
      o.hessianPath = takeValue();
      if (o.hessianPath.empty())
        die(arg + ": needs a value");
    } else if (arg == "--hessian-layer") {
      std::string v = takeValue();
      char *end = nullptr;
      errno = 0;
      long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || errno || n < -1)
        die(arg + ": '" + v + "' is not a layer (or -1)");
      o.hessianLayer = n;
    } else if (arg == "--chunks") {
      std::string v = takeValue();
      char *end = nullptr;
      errno = 0;
      long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || errno || n < 1)
        die(arg + ": '" + v + "' is not a positive number of windows");
      o.maxChunks = n;
    } else {
      die("unknown option '" + std::string(argv[i]) +
          "' (model-run --help lists them)");
    }
  }
  if (o.haveIds && (o.havePrompt || o.chat || o.perplexity))
    die("--prompt-ids: give the prompt as text (-p, -f) or as ids, not both");
  if (!o.logitsPath.empty() && !o.haveIds)
    die("--logits-out: needs --prompt-ids");
  if (!o.generatedLogitsPath.empty() && !o.haveIds)
    die("--generated-logits-out: needs --prompt-ids");
  if (!o.logitsPath.empty() && !o.generatedLogitsPath.empty())
    die("--generated-logits-out: not with --logits-out (a prompt runs either "
        "for every position's logits or for the last one's)");
  if (o.warmup && !o.haveIds)
    die("--warmup: needs --prompt-ids");
  if (o.repeat > 1 && !o.haveIds)
    die("--repeat: needs --prompt-ids");
  // What a run collects would also count the passes --repeat and --warmup
  // add.
  const bool collects = !o.statsPath.empty() || !o.calibrationPath.empty() ||
                        !o.hessianPath.empty();
  if (o.repeat > 1 && collects)
    die("--repeat: every pass would enter --stats, --calibration-out and "
        "--hessian-out; use it without them");
  if (o.warmup && collects)
    die("--warmup: the warm-up pass would enter --stats, --calibration-out "
        "and --hessian-out; use it without them");
  if (o.perplexity && (o.promptFlag != "-f" && o.promptFlag != "--file"))
    die("--perplexity: needs the text to score (-f FILE)");
  if (o.perplexity && o.chat)
    die("--perplexity: not with -cnv");
  if (o.maxChunks && !o.perplexity)
    die("--chunks: needs --perplexity");
  if (o.hessianPath.empty() != (o.hessianLayer == -2))
    die("--hessian-out and --hessian-layer go together");
  if (o.klDivergence && o.klBasePath.empty())
    die("--kl-divergence: needs --kl-divergence-base FILE (the base "
        "model's log-probabilities, written by a run without "
        "--kl-divergence)");
  if (!o.klBasePath.empty() && !o.perplexity)
    die(std::string(o.klDivergence ? "--kl-divergence"
                                   : "--kl-divergence-base") +
        ": needs --perplexity -f FILE");
  if (!o.havePrompt && !o.haveIds && !o.chat)
    die("no prompt: give -p TEXT, -f FILE, --prompt-ids LIST or -cnv "
        "(model-run --help)");
  return o;
}

/// The model and what every mode needs of it.
class Session {
public:
  Session(moec_model *model, const Options &options)
      : model(model), options(options),
        vocab(moec_model_vocab_size(model)),
        context(moec_model_context_length(model)) {}

  void check(int rc) {
    if (rc != 0)
      die(moec_model_error(model));
  }

  std::vector<int32_t> tokenize(const std::string &text, bool addSpecial,
                                bool parseSpecial) {
    int64_t n = moec_model_tokenize(model, text.data(), text.size(),
                                    addSpecial, parseSpecial, nullptr, 0);
    if (n < 0)
      die(std::string("text prompts need the tokenizer: ") +
          moec_model_error(model) + ": pass token ids with --prompt-ids");
    std::vector<int32_t> ids(static_cast<size_t>(n));
    moec_model_tokenize(model, text.data(), text.size(), addSpecial,
                        parseSpecial, ids.data(), n);
    return ids;
  }

  std::string piece(int32_t token) {
    char buffer[256];
    int64_t n = moec_model_token_to_piece(model, token, 0, buffer,
                                          sizeof(buffer));
    if (n < 0)
      die(moec_model_error(model));
    if (size_t(n) <= sizeof(buffer))
      return std::string(buffer, size_t(n));
    std::string big(size_t(n), '\0');
    moec_model_token_to_piece(model, token, 0, big.data(), big.size());
    return big;
  }

  /// Generates after the context's last token until `limit` tokens (-1:
  /// the context's end) or an end-of-text token; calls `emit` with each
  /// token as it is chosen. The last chosen token is not evaluated.
  /// Returns the tokens chosen (the end token included, not emitted).
  template <typename Emit>
  std::vector<int32_t> generate(moec_sampler *sampler, long long limit,
                                Emit emit) {
    std::vector<int32_t> out;
    auto start = std::chrono::steady_clock::now();
    for (long long step = 0; limit < 0 || step < limit; ++step) {
      int32_t next = moec_sampler_sample(sampler, moec_model_logits(model),
                                         vocab);
      out.push_back(next);
      ++generated;
      bool end = !options.ignoreEos && moec_model_token_is_end(model, next);
      if (end)
        break;
      emit(next);
      bool lastAllowed = limit >= 0 && step + 1 == limit;
      if (lastAllowed || moec_model_position(model) >= context)
        break;
      check(moec_model_decode(model, next));
      ++decodes;
    }
    evalMs += millisecondsSince(start);
    return out;
  }

  void prefill(const std::vector<int32_t> &tokens) {
    if (moec_model_position(model) + int64_t(tokens.size()) > context)
      die("the prompt (" + std::to_string(tokens.size()) +
          " tokens) does not fit the model's context of " +
          std::to_string(context) + " (" +
          std::to_string(moec_model_position(model)) + " in use)");
    auto start = std::chrono::steady_clock::now();
    check(moec_model_prefill(model, tokens.data(), int64_t(tokens.size())));
    promptMs += millisecondsSince(start);
    promptTokens += int64_t(tokens.size());
  }

  /// Says the seed when it was chosen at random, so that a run can be
  /// repeated.
  void announceSeed() {
    if (!options.haveSeed && options.sampling.temperature > 0.0f)
      std::fprintf(stderr, "model-run: sampling seed %llu (-s to repeat)\n",
                   (unsigned long long)options.sampling.seed);
  }

  /// --stats: the model's statistics with this run's counts and times.
  void writeStats(double loadMs) {
    if (options.statsPath.empty())
      return;
    char extra[1024];
    std::snprintf(
        extra, sizeof(extra),
        "\"run\": {\"mode\": \"%s\", \"prompt_tokens\": %lld, "
        "\"generated_tokens\": %lld, \"load_ms\": %.3f, \"prompt_ms\": %.3f, "
        "\"eval_ms\": %.3f, \"prompt_tokens_per_s\": %.3f, "
        "\"eval_tokens_per_s\": %.3f, \"time_to_first_token_ms\": %.3f}",
        options.mode.c_str(), promptTokens, generated, loadMs, promptMs, evalMs,
        promptMs > 0 ? 1e3 * double(promptTokens) / promptMs : 0.0,
        evalMs > 0 ? 1e3 * double(decodes) / evalMs : 0.0, promptMs);
    std::string members = statsMembers + extra;
    if (moec_model_write_stats(model, options.statsPath.c_str(),
                               members.c_str()) != 0)
      die("--stats: " + std::string(moec_model_error(model)));
  }

  void printTimings(double loadMs) {
    writeStats(loadMs);
    if (!options.hessianPath.empty()) {
      if (moec_model_write_hessians(model, options.hessianPath.c_str()) != 0)
        die("--hessian-out: " + std::string(moec_model_error(model)));
      std::fprintf(stderr, "model-run: wrote the Hessians of layer %lld to %s\n",
                   options.hessianLayer, options.hessianPath.c_str());
    }
    if (!options.calibrationPath.empty()) {
      if (moec_model_write_calibration(model,
                                       options.calibrationPath.c_str()) != 0)
        die("--calibration-out: " + std::string(moec_model_error(model)));
      std::fprintf(stderr, "model-run: wrote the calibration to %s\n",
                   options.calibrationPath.c_str());
    }
    std::fprintf(stderr, "\nmodel-run: %16s = %10.2f ms\n", "load time",
                 loadMs);
    if (options.warmup)
      std::fprintf(stderr,
                   "model-run: %16s = %10.2f ms (untimed: the prompt and %lld "
                   "decode steps, then a reset)\n",
                   "warm-up time", warmupMs, warmupDecodes);
    printTiming("prompt eval time", promptMs, promptTokens, "tokens");
    printTiming("eval time", evalMs, decodes, "runs");
    std::fprintf(stderr,
                 "model-run: %16s = %10.2f ms / %5lld tokens (%d threads)\n",
                 "total time", loadMs + promptMs + evalMs,
                 (long long)(promptTokens + decodes),
                 moec_model_thread_count(model));
  }

  moec_model *model;
  const Options &options;
  const int64_t vocab, context;
  double promptMs = 0, evalMs = 0, warmupMs = 0;
  long long promptTokens = 0, decodes = 0, generated = 0, warmupDecodes = 0;
  /// JSON members a mode adds to --stats (each followed by ", ").
  std::string statsMembers;
};

int runIds(Session &s, const Options &o, double loadMs) {
  moec_model *model = s.model;
  for (int32_t id : o.promptIds)
    if (id >= s.vocab)
      die("--prompt-ids: " + std::to_string(id) +
          " is outside the vocabulary (0.." + std::to_string(s.vocab - 1) +
          ")");
  long long predict = o.predict < 0 ? s.context - (long long)o.promptIds.size()
                                    : o.predict;
  if (int64_t(o.promptIds.size()) > s.context)
    die("--prompt-ids: " + std::to_string(o.promptIds.size()) +
        " tokens do not fit the model's context of " +
        std::to_string(s.context));
  // The last generated token is never evaluated.
  int64_t evaluated = int64_t(o.promptIds.size()) + (predict ? predict - 1 : 0);
  if (evaluated > s.context)
    die("-n: the prompt (" + std::to_string(o.promptIds.size()) +
        " tokens) and " + std::to_string(predict) +
        " generated tokens do not fit the model's context of " +
        std::to_string(s.context));

  // One of the two logits files: every position's (the prompt through
  // eval_all) or the generating positions' (a plain prefill).
  OutputFile logits;
  const bool everyPosition = !o.logitsPath.empty();
  if (everyPosition)
    logits.open("--logits-out", o.logitsPath);
  else if (!o.generatedLogitsPath.empty())
    logits.open("--generated-logits-out", o.generatedLogitsPath);
  auto check = [&](int rc) {
    if (rc != 0) {
      std::string message = moec_model_error(model);
      logits.discard();
      die(message);
    }
  };
  if (o.warmup) {
    // The same work as the timed run, untimed, then a reset: what
    // bench/llama_peer.py gives llama.cpp before its timed pass.
    auto warmupStart = std::chrono::steady_clock::now();
    check(moec_model_prefill(model, o.promptIds.data(),
                             int64_t(o.promptIds.size())));
    long long steps =
        std::min<long long>(4, s.context - (long long)o.promptIds.size());
    for (long long step = 0; step < steps; ++step) {
      const float *row = moec_model_logits(model);
      int32_t next = int32_t(std::max_element(row, row + s.vocab) - row);
      check(moec_model_decode(model, next));
      ++s.warmupDecodes;
    }
    moec_model_reset(model);
    s.warmupMs = millisecondsSince(warmupStart);
  }
  // One timed pass: the prompt, then the generated ids; logits only on
  // the first (--repeat's further passes must generate the same ids).
  auto timedPass = [&](bool writeLogits, double &promptMs, double &evalMs,
                       long long &decodes) {
    auto promptStart = std::chrono::steady_clock::now();
    if (writeLogits && everyPosition) {
      std::vector<float> rows(o.promptIds.size() * size_t(s.vocab));
      check(moec_model_eval_all(model, o.promptIds.data(),
                                int64_t(o.promptIds.size()), rows.data()));
      logits.write(rows.data(), int64_t(rows.size()));
    } else {
      check(moec_model_prefill(model, o.promptIds.data(),
                               int64_t(o.promptIds.size())));
      if (writeLogits && predict > 0)
        logits.write(moec_model_logits(model), s.vocab);
    }
    promptMs = millisecondsSince(promptStart);

    // Greedy unless sampling is asked for: ids are what tests compare.
    moec_sampler_params params = o.sampling;
    char error[256];
    moec_sampler *sampler = moec_sampler_new(&params, error, sizeof(error));
    if (!sampler)
      die(error);
    std::vector<int32_t> ids;
    decodes = 0;
    auto evalStart = std::chrono::steady_clock::now();
    for (long long step = 0; step < predict; ++step) {
      int32_t next = moec_sampler_sample(sampler, moec_model_logits(model),
                                         s.vocab);
      ids.push_back(next);
      if (step + 1 == predict)
        break;
      check(moec_model_decode(model, next));
      ++decodes;
      if (writeLogits)
        logits.write(moec_model_logits(model), s.vocab);
    }
    evalMs = millisecondsSince(evalStart);
    moec_sampler_free(sampler);
    return ids;
  };
  std::vector<int32_t> generated =
      timedPass(logits.isOpen(), s.promptMs, s.evalMs, s.decodes);
  logits.commit();
  s.promptTokens = (long long)o.promptIds.size();
  s.generated = (long long)generated.size();
  if (o.repeat > 1) {
    // Every pass's speeds on one line; the timing lines keep the fastest.
    std::string passes;
    auto rate = [](long long n, double ms) { return ms > 0 ? 1000.0 * n / ms : 0.0; };
    auto record = [&](double promptMs, double evalMs, long long decodes) {
      char text[96];
      std::snprintf(text, sizeof(text), "%s%.2f/%.2f", passes.empty() ? "" : " ",
                    rate(s.promptTokens, promptMs), rate(decodes, evalMs));
      passes += text;
    };
    record(s.promptMs, s.evalMs, s.decodes);
    for (long long pass = 1; pass < o.repeat; ++pass) {
      moec_model_reset(model);
      double promptMs = 0, evalMs = 0;
      long long decodes = 0;
      if (timedPass(false, promptMs, evalMs, decodes) != generated)
        die("--repeat: pass " + std::to_string(pass + 1) +
            " generated other ids than the first");
      record(promptMs, evalMs, decodes);
      s.promptMs = std::min(s.promptMs, promptMs);
      s.evalMs = std::min(s.evalMs, evalMs);
    }
    std::fprintf(stderr,
                 "model-run: %lld passes, prompt eval / eval tokens per second: "
                 "%s\n",
                 o.repeat, passes.c_str());
  }

  std::string line;
  for (size_t i = 0; i < generated.size(); ++i)
    line += (i ? " " : "") + std::to_string(generated[i]);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  s.printTimings(loadMs);
  return 0;
}

int runText(Session &s, const Options &o, moec_sampler *sampler,
            double loadMs) {
  std::vector<int32_t> prompt = s.tokenize(o.prompt, true, true);
  if (prompt.empty())
    die(o.promptFlag + ": the prompt is empty");
  s.announceSeed();
  for (int32_t t : prompt)
    moec_sampler_accept(sampler, t);
  std::fputs(o.prompt.c_str(), stdout);
  std::fflush(stdout);
  s.prefill(prompt);
  moec::tokenizer::Utf8Stream stream;
  s.generate(sampler, o.predict, [&](int32_t token) {
    std::string text = stream.push(s.piece(token));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  });
  std::string rest = stream.finish();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  s.printTimings(loadMs);
  return 0;
}

int runChat(Session &s, const Options &o, moec_sampler *sampler,
            double loadMs) {
  using namespace moec::tokenizer;
  ChatFormat format;
  std::string error;
  if (!moec_model_has_tokenizer(s.model))
    die(std::string("-cnv: ") + moec_model_error(s.model));
  if (!detectChatFormat(moec_model_chat_template(s.model), format, error))
    die("-cnv: " + error);
  // The spellings of BOS and EOS, which some templates write out.
  auto spelling = [&](int32_t token) -> std::string {
    if (token < 0)
      return "";
    char buffer[256];
    int64_t n = moec_model_token_to_piece(s.model, token, /*special=*/1,
                                          buffer, sizeof(buffer));
    return n > 0 ? std::string(buffer, std::min<size_t>(size_t(n),
                                                        sizeof(buffer)))
                 : "";
  };
  const std::string bos = spelling(moec_model_token_bos(s.model));
  const std::string eos = spelling(moec_model_token_eos(s.model));
  s.announceSeed();
  std::fprintf(stderr, "model-run: chat format %s; an empty line or end of "
                       "input ends the chat\n",
               getChatFormatName(format));
  std::vector<ChatMessage> messages;
  if (o.havePrompt)
    messages.push_back({"system", o.prompt});
  // The text of everything in the context so far, as the template spells
  // it: each turn adds the difference (llama.cpp's way).
  std::string said;
  std::string line;
  while (true) {
    std::fputs("\n> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty())
      break;
    messages.push_back({"user", line});
    std::string prompt = formatChat(format, messages, true, bos, eos);
    std::string delta = prompt.substr(std::min(said.size(), prompt.size()));
    // The template writes BOS where the model wants one.
    std::vector<int32_t> tokens = s.tokenize(delta, false, true);
    for (int32_t t : tokens)
      moec_sampler_accept(sampler, t);
    s.prefill(tokens);
    said = prompt;
    Utf8Stream stream;
    std::string answer;
    s.generate(sampler, o.predict, [&](int32_t token) {
      std::string text = stream.push(s.piece(token));
      answer += text;
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    });
    std::string rest = stream.finish();
    answer += rest;
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fflush(stdout);
    said += answer;
    messages.push_back({"assistant", answer});
    if (moec_model_position(s.model) >= s.context) {
      std::fprintf(stderr, "\nmodel-run: the context is full\n");
      break;
    }
  }
  std::fputs("\n", stdout);
  s.printTimings(loadMs);
  return 0;
}

//===----------------------------------------------------------------------===//
// --perplexity and its KL-divergence comparison
//===----------------------------------------------------------------------===//

/// The file `--kl-divergence-base` writes and `--kl-divergence` reads
/// (version 1, little-endian; docs/text-and-chat.md):
///
///   offset     bytes  field
///   0          8      magic "moec-kld"
///   8          4      version, 1
///   12         4      vocabulary size V
///   16         4      window N (-c)
///   20         4      windows W
///   24         8      scored positions P = W * (N - 1 - N/2)
///   32         8      tokens T = W * N
///   40         4T     the evaluated text's token ids (int32) as tokenized;
///                     each window's first is evaluated as BOS
///   40 + 4T    4PV    per scored position, window by window, positions
///                     N/2 .. N-2 (each predicting the next token): the V
///                     float32 natural-log probabilities of the base model,
///                     log-softmax computed in double and rounded
///
/// llama.cpp's file stores each row as uint16 steps over 16 nats (half the
/// size); float32 keeps KL divergences below 1e-6 exact enough to compare.
struct KlBaseHeader {
  char magic[8];
  uint32_t version;
  uint32_t vocab;
  uint32_t window;
  uint32_t windows;
  uint64_t positions;
  uint64_t tokens;
};
static_assert(sizeof(KlBaseHeader) == 40, "the KL base header is 40 bytes");
constexpr char kKlBaseMagic[8] = {'m', 'o', 'e', 'c', '-', 'k', 'l', 'd'};
constexpr uint32_t kKlBaseVersion = 1;

/// Positions a window of `n` scores: N/2 .. N-2 (llama.cpp's).
int64_t scoredPerWindow(int64_t n) { return n - 1 - n / 2; }

/// --kl-divergence: BASE opened, its header checked for itself (magic,
/// version, consistency, file size); the caller checks it against the run.
class KlBaseReader {
public:
  explicit KlBaseReader(const std::string &path) : path(path) {
    file = std::fopen(path.c_str(), "rb");
    if (!file)
      fail(std::string("cannot read: ") + std::strerror(errno));
    size_t got = std::fread(&header, 1, sizeof(header), file);
    if (got < sizeof(header.magic) ||
        std::memcmp(header.magic, kKlBaseMagic, sizeof(kKlBaseMagic)) != 0)
      fail("not a KL-divergence base file (no \"moec-kld\" magic; write one "
           "with --perplexity --kl-divergence-base and no --kl-divergence)");
    if (got < sizeof(header))
      fail("truncated: " + std::to_string(got) + " bytes, shorter than its " +
           std::to_string(sizeof(header)) + "-byte header");
    if (header.version != kKlBaseVersion)
      fail("format version " + std::to_string(header.version) +
           "; this model-run reads version " + std::to_string(kKlBaseVersion));
    if (header.vocab == 0 || header.window < 4 || header.windows == 0 ||
        header.tokens != uint64_t(header.windows) * header.window ||
        header.positions !=
            uint64_t(header.windows) * uint64_t(scoredPerWindow(header.window)))
      fail("corrupt header (vocabulary " + std::to_string(header.vocab) +
           ", window " + std::to_string(header.window) + ", windows " +
           std::to_string(header.windows) + ", positions " +
           std::to_string(header.positions) + ", tokens " +
           std::to_string(header.tokens) + ")");
    unsigned __int128 want =
        (unsigned __int128)sizeof(header) +
        (unsigned __int128)header.tokens * 4 +
        (unsigned __int128)header.positions * header.vocab * 4;
    struct stat st;
    if (::fstat(::fileno(file), &st) != 0)
      fail(std::string("cannot read: ") + std::strerror(errno));
    unsigned __int128 have = (unsigned __int128)st.st_size;
    if (have != want)
      fail(std::string(have < want ? "truncated"
                                   : "longer than its header says") +
           ": " + std::to_string(uint64_t(st.st_size)) +
           " bytes, its header says " + std::to_string(uint64_t(want)));
    tokens.resize(size_t(header.tokens));
    read(tokens.data(), tokens.size() * sizeof(int32_t));
  }
  ~KlBaseReader() { std::fclose(file); }

  void read(void *data, size_t bytes) {
    if (std::fread(data, 1, bytes, file) != bytes)
      fail(std::string("cannot read: ") +
           (std::ferror(file) ? std::strerror(errno) : "truncated"));
  }

  [[noreturn]] void fail(const std::string &message) {
    die("--kl-divergence-base: " + path + ": " + message);
  }

  KlBaseHeader header = {};
  std::vector<int32_t> tokens;

private:
  std::string path;
  FILE *file = nullptr;
};

/// llama.cpp's mean and its standard error (none below 11 values).
std::pair<double, double> meanAndUncertainty(double sum, double sum2,
                                             int64_t count) {
  if (count < 1)
    return {0.0, 0.0};
  double f = sum / double(count);
  double df = sum2 / double(count) - f * f;
  df = df > 0 && count > 10 ? std::sqrt(df / double(count - 1)) : 0.0;
  return {f, df};
}

/// Linear interpolation between the sorted values around fraction * (n-1)
/// (llama.cpp's and numpy's default).
double percentile(const std::vector<double> &sorted, double fraction) {
  if (fraction <= 0)
    return sorted.front();
  if (fraction >= 1)
    return sorted.back();
  double p = fraction * double(sorted.size() - 1);
  size_t ip = size_t(p);
  p -= double(ip);
  return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

/// Index of the largest value, the lowest one on ties.
int64_t argmax(const float *row, int64_t n) {
  int64_t best = 0;
  for (int64_t v = 1; v < n; ++v)
    if (row[v] > row[best])
      best = v;
  return best;
}

/// The sums llama.cpp's KL-divergence statistics come from, over the
/// scored positions, and the per-position KL divergence and delta p.
struct KlStats {
  double sumNll = 0, sumNll2 = 0, sumNllBase = 0, sumNllBase2 = 0,
         sumNllNllBase = 0, sumDiff = 0, sumDiff2 = 0, sumKld = 0, sumKld2 = 0,
         sumDp = 0, sumDp2 = 0, sumDp4 = 0;
  int64_t sameTop = 0, count = 0;
  std::vector<double> kld, dp;

  /// One position: `base` and `q` are float32 log-probabilities, the
  /// base's (from BASE) and this model's, rounded the same way, so that
  /// one model against itself gives exactly 0.
  void add(const float *base, const float *q, int64_t vocab, int32_t target) {
    double kl = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      double b = base[v];
      kl += std::exp(b) * (b - double(q[v]));
    }
    double nll = -double(q[target]), nllBase = -double(base[target]);
    sumNll += nll;
    sumNll2 += nll * nll;
    sumNllBase += nllBase;
    sumNllBase2 += nllBase * nllBase;
    sumNllNllBase += nll * nllBase;
    sumDiff += nll - nllBase;
    sumDiff2 += (nll - nllBase) * (nll - nllBase);
    sumKld += kl;
    sumKld2 += kl * kl;
    double d = std::exp(-nll) - std::exp(-nllBase);
    sumDp += d;
    sumDp2 += d * d;
    sumDp4 += d * d * d * d;
    if (argmax(base, vocab) == argmax(q, vocab))
      ++sameTop;
    ++count;
    kld.push_back(kl);
    dp.push_back(d);
  }

  std::pair<double, double> logPpl() const {
    return meanAndUncertainty(sumNll, sumNll2, count);
  }
  std::pair<double, double> logPplBase() const {
    return meanAndUncertainty(sumNllBase, sumNllBase2, count);
  }
  double logPplCovariance() const {
    if (count < 10)
      return 0.0;
    double c = sumNllNllBase / double(count) -
               (sumNll / double(count)) * (sumNllBase / double(count));
    return c / double(count - 1);
  }
  /// ln(PPL(Q)/PPL(base)); its uncertainty is llama.cpp's (from the
  /// variances and the covariance), computed from the differences so that
  /// equal models give exactly 0.
  std::pair<double, double> logPplRatio() const {
    return {logPpl().first - logPplBase().first,
            meanAndUncertainty(sumDiff, sumDiff2, count).second};
  }
  std::pair<double, double> kl() const {
    return meanAndUncertainty(sumKld, sumKld2, count);
  }
  std::pair<double, double> deltaP() const {
    return meanAndUncertainty(sumDp, sumDp2, count);
  }
  std::pair<double, double> deltaPRms() const {
    auto mse = meanAndUncertainty(sumDp2, sumDp4, count);
    double rms = std::sqrt(mse.first);
    return {rms, rms > 0 ? 0.5 / rms * mse.second : 0.0};
  }
  std::pair<double, double> sameTopP() const {
    double p = count ? double(sameTop) / double(count) : 0.0;
    return {p, count > 1 ? std::sqrt(p * (1 - p) / double(count - 1)) : 0.0};
  }

  /// The row llama-perplexity --kl-divergence prints after each window.
  void printWindow(int64_t window) const {
    auto q = logPpl();
    double ppl = std::exp(q.first);
    auto ratio = logPplRatio(), k = kl(), rms = deltaPRms(), top = sameTopP();
    std::printf("%6lld    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± "
                "%10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
                (long long)window, ppl, ppl * q.second, ratio.first,
                ratio.second, k.first, k.second, 100 * rms.first,
                100 * rms.second, 100 * top.first, 100 * top.second);
  }

  /// llama.cpp's summary, then one line for scripts. Sorts kld and dp.
  void printSummary(std::string &statsMembers) {
    std::sort(kld.begin(), kld.end());
    std::sort(dp.begin(), dp.end());
    auto q = logPpl(), b = logPplBase();
    double ppl = std::exp(q.first), pplBase = std::exp(b.first);
    double pplUnc = ppl * q.second, pplBaseUnc = pplBase * b.second;
    double cov = logPplCovariance();
    auto ratio = logPplRatio();
    std::printf("\n====== Perplexity statistics ======\n");
    std::printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", ppl,
                pplUnc);
    std::printf("Mean PPL(base)                : %10.6f ± %10.6f\n", pplBase,
                pplBaseUnc);
    if (q.second > 0 && b.second > 0)
      std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n",
                  100.0 * cov / (q.second * b.second));
    std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n",
                ratio.first, ratio.second);
    double pplRatio = std::exp(ratio.first);
    std::printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", pplRatio,
                pplRatio * ratio.second);
    double diffVar =
        pplUnc * pplUnc + pplBaseUnc * pplBaseUnc - 2.0 * ppl * pplBase * cov;
    std::printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n",
                ppl - pplBase, diffVar > 0 ? std::sqrt(diffVar) : 0.0);

    auto k = kl();
    std::printf("\n====== KL divergence statistics ======\n");
    std::printf("Mean    KLD: %10.6f ± %10.6f\n", k.first, k.second);
    std::printf("Maximum KLD: %10.6f\n", kld.back());
    const struct {
      const char *label;
      double fraction;
    } kldRows[] = {{"99.9%", 0.999}, {"99.0%", 0.99}, {"95.0%", 0.95},
                   {"90.0%", 0.9},   {"Median", 0.5}, {"10.0%", 0.1},
                   {" 5.0%", 0.05},  {" 1.0%", 0.01}, {" 0.1%", 0.001}};
    for (const auto &row : kldRows)
      std::printf("%-7s KLD: %10.6f\n", row.label,
                  percentile(kld, row.fraction));
    std::printf("Minimum KLD: %10.6f\n", kld.front());

    auto d = deltaP();
    std::printf("\n====== Token probability statistics ======\n");
    std::printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100 * d.first,
                100 * d.second);
    std::printf("Maximum Δp: %6.3f%%\n", 100 * dp.back());
    const struct {
      const char *label;
      double fraction;
    } dpRows[] = {{"99.9%", 0.999}, {"99.0%", 0.99}, {"95.0%", 0.95},
                  {"90.0%", 0.9},   {"75.0%", 0.75}, {"Median", 0.5},
                  {"25.0%", 0.25},  {"10.0%", 0.1},  {" 5.0%", 0.05},
                  {" 1.0%", 0.01},  {" 0.1%", 0.001}};
    for (const auto &row : dpRows)
      std::printf("%-7s Δp: %6.3f%%\n", row.label,
                  100 * percentile(dp, row.fraction));
    std::printf("Minimum Δp: %6.3f%%\n", 100 * dp.front());
    auto rms = deltaPRms();
    std::printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100 * rms.first,
                100 * rms.second);
    auto top = sameTopP();
    std::printf("Same top p: %6.3f ± %5.3f %%\n", 100 * top.first,
                100 * top.second);

    // One line for scripts: plain numbers (fractions, not percent), key=value.
    char line[1024];
    std::snprintf(
        line, sizeof(line),
        "mean=%.10g mean-unc=%.10g median=%.10g p99=%.10g p99.9=%.10g "
        "max=%.10g same-top1=%.10g same-top1-unc=%.10g ln-ppl-ratio=%.10g "
        "ln-ppl-ratio-unc=%.10g mean-dp=%.10g mean-dp-unc=%.10g "
        "ppl=%.10g ppl-base=%.10g positions=%lld",
        k.first, k.second, percentile(kld, 0.5), percentile(kld, 0.99),
        percentile(kld, 0.999), kld.back(), top.first, top.second, ratio.first,
        ratio.second, d.first, d.second, ppl, pplBase, (long long)count);
    std::printf("\nkl-divergence: %s\n", line);

    char json[1024];
    std::snprintf(
        json, sizeof(json),
        "\"kl_divergence\": {\"mean\": %.10g, \"mean_unc\": %.10g, "
        "\"median\": %.10g, \"p99\": %.10g, \"p99_9\": %.10g, \"max\": %.10g, "
        "\"same_top1\": %.10g, \"same_top1_unc\": %.10g, "
        "\"ln_ppl_ratio\": %.10g, \"ln_ppl_ratio_unc\": %.10g, "
        "\"mean_dp\": %.10g, \"mean_dp_unc\": %.10g, \"ppl\": %.10g, "
        "\"ppl_base\": %.10g, \"positions\": %lld}, ",
        k.first, k.second, percentile(kld, 0.5), percentile(kld, 0.99),
        percentile(kld, 0.999), kld.back(), top.first, top.second, ratio.first,
        ratio.second, d.first, d.second, ppl, pplBase, (long long)count);
    statsMembers += json;
  }
};

int runPerplexity(Session &s, const Options &o, double loadMs) {
  const bool compare = o.klDivergence,
             writeBase = !o.klBasePath.empty() && !o.klDivergence;
  std::unique_ptr<KlBaseReader> base;
  int64_t n = o.window;
  if (compare) {
    base = std::make_unique<KlBaseReader>(o.klBasePath);
    const KlBaseHeader &h = base->header;
    if (int64_t(h.vocab) != s.vocab)
      base->fail("written by a model with a vocabulary of " +
                 std::to_string(h.vocab) + " tokens; this model has " +
                 std::to_string(s.vocab));
    if (o.haveWindow && int64_t(h.window) != o.window)
      base->fail("written with -c " + std::to_string(h.window) +
                 "; this run has -c " + std::to_string(o.window) +
                 " (leave -c out to take BASE's)");
    n = h.window;
  }
  if (n > s.context)
    die("-c: " + std::to_string(n) + " is more than the model's context of " +
        std::to_string(s.context));
  std::vector<int32_t> tokens = s.tokenize(o.prompt, true, false);
  int64_t chunks = int64_t(tokens.size()) / n;
  if (o.maxChunks)
    chunks = std::min<int64_t>(chunks, o.maxChunks);
  if (chunks == 0)
    die("--perplexity: the text has " + std::to_string(tokens.size()) +
        " tokens, fewer than one window of " + std::to_string(n) + " (-c)");
  if (compare) {
    const KlBaseHeader &h = base->header;
    if (int64_t(h.windows) != chunks)
      base->fail("written for a different text: " + std::to_string(h.windows) +
                 " windows of " + std::to_string(n) + " there, " +
                 std::to_string(chunks) +
                 " here (give the -f FILE it was written with)");
    for (size_t i = 0; i < base->tokens.size(); ++i)
      if (base->tokens[i] != tokens[i])
        base->fail("written for a different text: token " + std::to_string(i) +
                   " is " + std::to_string(base->tokens[i]) + " there, " +
                   std::to_string(tokens[i]) +
                   " here (give the -f FILE it was written with)");
  }
  std::vector<int32_t> bosProbe = s.tokenize("", true, false);
  const int64_t first = n / 2, scored = scoredPerWindow(n);

  OutputFile baseOut;
  auto check = [&](int rc) {
    if (rc != 0) {
      std::string message = moec_model_error(s.model);
      baseOut.discard();
      die(message);
    }
  };
  // Opened before anything is printed: an unwritable BASE is one line.
  if (writeBase)
    baseOut.open("--kl-divergence-base", o.klBasePath);
  std::fprintf(stderr,
               "model-run: perplexity: %zu tokens, %lld windows of %lld, "
               "second half scored\n",
               tokens.size(), (long long)chunks, (long long)n);
  if (writeBase) {
    KlBaseHeader h = {};
    std::memcpy(h.magic, kKlBaseMagic, sizeof(h.magic));
    h.version = kKlBaseVersion;
    h.vocab = uint32_t(s.vocab);
    h.window = uint32_t(n);
    h.windows = uint32_t(chunks);
    h.positions = uint64_t(chunks) * uint64_t(scored);
    h.tokens = uint64_t(chunks) * uint64_t(n);
    if (int64_t(h.windows) != chunks || int64_t(h.window) != n) {
      baseOut.discard();
      die("--kl-divergence-base: " + std::to_string(chunks) + " windows of " +
          std::to_string(n) + " do not fit the file format");
    }
    double bytes = double(sizeof(h)) + 4.0 * double(h.tokens) +
                   4.0 * double(h.positions) * double(s.vocab);
    std::fprintf(stderr,
                 "model-run: writing the log-probabilities of %llu positions "
                 "to %s (%.1f MiB)\n",
                 (unsigned long long)h.positions, o.klBasePath.c_str(),
                 bytes / (1024.0 * 1024.0));
    baseOut.writeBytes(&h, sizeof(h));
    baseOut.writeBytes(tokens.data(), size_t(h.tokens) * sizeof(int32_t));
  }
  if (compare)
    std::printf("window             PPL               ln(PPL(Q)/PPL(base))   "
                "       KL divergence               Δp RMS             Same "
                "top p\n");

  std::vector<float> logits(size_t(n) * size_t(s.vocab));
  // This window's scored rows of float32 log-probabilities: written to
  // BASE, or read from it; and this model's row when comparing.
  std::vector<float> rows, row;
  if (writeBase || compare)
    rows.resize(size_t(scored) * size_t(s.vocab));
  if (compare)
    row.resize(size_t(s.vocab));
  KlStats stats;
  double nll = 0;
  int64_t count = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int32_t> window(tokens.begin() + c * n,
                                tokens.begin() + (c + 1) * n);
    if (!bosProbe.empty())
      window[0] = bosProbe.front();
    moec_model_reset(s.model);
    check(moec_model_eval_all(s.model, window.data(), n, logits.data()));
    if (compare)
      base->read(rows.data(), rows.size() * sizeof(float));
    for (int64_t j = first; j < n - 1; ++j) {
      const float *logit = logits.data() + size_t(j) * size_t(s.vocab);
      float max = logit[0];
      for (int64_t v = 1; v < s.vocab; ++v)
        max = std::max(max, logit[v]);
      double sum = 0;
      for (int64_t v = 0; v < s.vocab; ++v)
        sum += std::exp(double(logit[v]) - max);
      int32_t target = tokens[size_t(c * n + j + 1)];
      nll += std::log(sum) + max - double(logit[target]);
      ++count;
      if (!writeBase && !compare)
        continue;
      // log-softmax in double, rounded to float32 (BASE's precision).
      double logSum = double(max) + std::log(sum);
      float *baseRow = rows.data() + size_t(j - first) * size_t(s.vocab);
      float *out = compare ? row.data() : baseRow;
      for (int64_t v = 0; v < s.vocab; ++v)
        out[v] = float(double(logit[v]) - logSum);
      if (compare)
        stats.add(baseRow, out, s.vocab, target);
    }
    if (writeBase)
      baseOut.write(rows.data(), int64_t(rows.size()));
    if (compare) {
      stats.printWindow(c + 1);
    } else {
      std::printf("[%lld]%.4f,", (long long)(c + 1), std::exp(nll / count));
    }
    std::fflush(stdout);
  }
  baseOut.commit();
  s.promptMs = millisecondsSince(start);
  s.promptTokens = chunks * n;
  double ppl = std::exp(nll / double(count));
  std::printf("%sFinal estimate: PPL = %.4f (%lld predictions)\n",
              compare ? "" : "\n", ppl, (long long)count);
  char json[256];
  std::snprintf(json, sizeof(json),
                "\"perplexity\": {\"ppl\": %.10g, \"predictions\": %lld, "
                "\"window\": %lld, \"windows\": %lld}, ",
                ppl, (long long)count, (long long)n, (long long)chunks);
  s.statsMembers += json;
  if (compare)
    stats.printSummary(s.statsMembers);
  std::fflush(stdout);
  s.printTimings(loadMs);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parseOptions(argc, argv);
  if (o.bundle.empty())
    o.bundle = defaultBundlePath();
  if (!o.haveSeed && !o.haveIds && !o.perplexity &&
      o.sampling.temperature > 0.0f)
    o.sampling.seed = std::random_device{}();
  if (o.haveIds && !o.haveSeed && o.sampling.temperature != 0.0f) {
    // Token-id runs are for tests and scripts: greedy unless sampling
    // flags (and a seed) say otherwise.
    o.sampling.temperature = 0.0f;
  }

  auto loadStart = std::chrono::steady_clock::now();
  moec_model_options options = {};
  options.bundle_path = o.bundle.c_str();
  options.threads = int(o.threads);
  options.memory_budget = o.memoryBudget;
  options.cache_policy = o.cachePolicy;
  options.io_mode = o.ioMode;
  options.no_prefetch = o.noPrefetch;
  options.max_batch = o.batch;
  char error[1024];
  moec_model *model = moec_model_open(&options, error, sizeof(error));
  if (!model)
    die(o.memoryBudget && std::strncmp(error, "memory budget", 13) == 0
            ? "--memory-budget: " + std::string(error + 15)
            : std::string(error));
  double loadMs = millisecondsSince(loadStart);
  if (!o.statsPath.empty())
    moec_model_record_routing(model, 1);
  if (!o.calibrationPath.empty()) {
    moec_model_start_calibration(model);
    // What was run, so that compression can run it again (GPTQ).
    std::string source = "{\"text\": \"";
    for (char ch : o.promptPath) {
      if (ch == '"' || ch == '\\')
        source += '\\';
      source += ch;
    }
    source += "\", \"context\": " + std::to_string(o.window) +
              ", \"chunks\": " + std::to_string(o.maxChunks) + "}";
    moec_model_set_calibration_source(model, source.c_str());
  }
  if (!o.hessianPath.empty())
    moec_model_collect_hessians(model, int(o.hessianLayer));
  o.mode = o.haveIds ? "ids" : o.perplexity ? "perplexity" : o.chat ? "chat"
                                                                   : "text";
  Session session(model, o);
  int rc;
  if (o.haveIds) {
    rc = runIds(session, o, loadMs);
  } else if (o.perplexity) {
    rc = runPerplexity(session, o, loadMs);
  } else {
    char samplerError[256];
    moec_sampler *sampler =
        moec_sampler_new(&o.sampling, samplerError, sizeof(samplerError));
    if (!sampler)
      die(samplerError);
    rc = o.chat ? runChat(session, o, sampler, loadMs)
                : runText(session, o, sampler, loadMs);
    moec_sampler_free(sampler);
  }
  moec_model_close(model);
  return rc;
}
