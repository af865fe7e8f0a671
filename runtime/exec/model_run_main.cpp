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
//       tokens, BOS first, the second half of each window scored.
//
// Errors are one line naming the flag or file, exit code 1. The model,
// tokenizer and sampler are used through the C interface (model.h) only:
// this is also its example.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/model.h"
#include "runtime/tokenizer/ChatTemplate.h"
#include "runtime/tokenizer/Tokenizer.h"

#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
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
    "                         model's context)\n"
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
    "  --logits-out FILE      with --prompt-ids: write the float32 logits\n"
    "                         after every token evaluated\n"
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

/// --logits-out, written under a temporary name and renamed when complete:
/// a failed run leaves no half-written file behind.
class LogitsFile {
public:
  void open(const std::string &target) {
    path = target;
    temporary = target + ".tmp" + std::to_string(::getpid());
    file = std::fopen(temporary.c_str(), "wb");
    if (!file)
      die("--logits-out: cannot write " + temporary + ": " +
          std::strerror(errno));
  }
  bool isOpen() const { return file != nullptr; }
  void write(const float *rows, int64_t count) {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                  "--logits-out writes the host's floats as little-endian");
    if (std::fwrite(rows, sizeof(float), size_t(count), file) != size_t(count))
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
    die("--logits-out: " + message);
  }
  std::string path, temporary;
  FILE *file = nullptr;
};

struct Options {
  std::string bundle, logitsPath, prompt, promptFlag, statsPath, mode;
  std::vector<int32_t> promptIds;
  bool havePrompt = false, haveIds = false, chat = false, perplexity = false,
       ignoreEos = false, haveSeed = false;
  long long predict = 128, threads = 0, window = 512;
  uint64_t memoryBudget = 0;
  int cachePolicy = 0, ioMode = 0, batch = 0;
  bool noPrefetch = false;
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
    } else if (arg == "--logits-out") {
      o.logitsPath = takeValue();
      if (o.logitsPath.empty())
        die(arg + ": needs a value");
    } else if (arg == "--stats") {
      o.statsPath = takeValue();
      if (o.statsPath.empty())
        die(arg + ": needs a value");
    } else {
      die("unknown option '" + std::string(argv[i]) +
          "' (model-run --help lists them)");
    }
  }
  if (o.haveIds && (o.havePrompt || o.chat || o.perplexity))
    die("--prompt-ids: give the prompt as text (-p, -f) or as ids, not both");
  if (!o.logitsPath.empty() && !o.haveIds)
    die("--logits-out: needs --prompt-ids");
  if (o.perplexity && (o.promptFlag != "-f" && o.promptFlag != "--file"))
    die("--perplexity: needs the text to score (-f FILE)");
  if (o.perplexity && o.chat)
    die("--perplexity: not with -cnv");
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
    if (moec_model_write_stats(model, options.statsPath.c_str(), extra) != 0)
      die("--stats: " + std::string(moec_model_error(model)));
  }

  void printTimings(double loadMs) {
    writeStats(loadMs);
    std::fprintf(stderr, "\nmodel-run: %16s = %10.2f ms\n", "load time",
                 loadMs);
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
  double promptMs = 0, evalMs = 0;
  long long promptTokens = 0, decodes = 0, generated = 0;
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

  LogitsFile logits;
  if (!o.logitsPath.empty())
    logits.open(o.logitsPath);
  auto check = [&](int rc) {
    if (rc != 0) {
      std::string message = moec_model_error(model);
      logits.discard();
      die(message);
    }
  };
  auto promptStart = std::chrono::steady_clock::now();
  if (logits.isOpen()) {
    std::vector<float> rows(o.promptIds.size() * size_t(s.vocab));
    check(moec_model_eval_all(model, o.promptIds.data(),
                              int64_t(o.promptIds.size()), rows.data()));
    logits.write(rows.data(), int64_t(rows.size()));
  } else {
    check(moec_model_prefill(model, o.promptIds.data(),
                             int64_t(o.promptIds.size())));
  }
  s.promptMs = millisecondsSince(promptStart);
  s.promptTokens = (long long)o.promptIds.size();

  // Greedy unless sampling is asked for: ids are what tests compare.
  moec_sampler_params params = o.sampling;
  char error[256];
  moec_sampler *sampler = moec_sampler_new(&params, error, sizeof(error));
  if (!sampler)
    die(error);
  std::vector<int32_t> generated;
  auto evalStart = std::chrono::steady_clock::now();
  for (long long step = 0; step < predict; ++step) {
    int32_t next = moec_sampler_sample(sampler, moec_model_logits(model),
                                       s.vocab);
    generated.push_back(next);
    if (step + 1 == predict)
      break;
    check(moec_model_decode(model, next));
    ++s.decodes;
    if (logits.isOpen())
      logits.write(moec_model_logits(model), s.vocab);
  }
  s.evalMs = millisecondsSince(evalStart);
  s.generated = (long long)generated.size();
  moec_sampler_free(sampler);
  logits.commit();

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

int runPerplexity(Session &s, const Options &o, double loadMs) {
  if (o.window > s.context)
    die("-c: " + std::to_string(o.window) +
        " is more than the model's context of " + std::to_string(s.context));
  std::vector<int32_t> tokens = s.tokenize(o.prompt, true, false);
  int64_t n = o.window, chunks = int64_t(tokens.size()) / n;
  if (chunks == 0)
    die("--perplexity: the text has " + std::to_string(tokens.size()) +
        " tokens, fewer than one window of " + std::to_string(n) +
        " (-c)");
  std::vector<int32_t> bosProbe = s.tokenize("", true, false);
  std::fprintf(stderr,
               "model-run: perplexity: %zu tokens, %lld windows of %lld, "
               "second half scored\n",
               tokens.size(), (long long)chunks, (long long)n);
  std::vector<float> logits(size_t(n) * size_t(s.vocab));
  int64_t first = n / 2;
  double nll = 0;
  int64_t count = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int32_t> window(tokens.begin() + c * n,
                                tokens.begin() + (c + 1) * n);
    if (!bosProbe.empty())
      window[0] = bosProbe.front();
    moec_model_reset(s.model);
    s.check(moec_model_eval_all(s.model, window.data(), n, logits.data()));
    for (int64_t j = first; j < n - 1; ++j) {
      const float *row = logits.data() + size_t(j) * size_t(s.vocab);
      float max = row[0];
      for (int64_t v = 1; v < s.vocab; ++v)
        max = std::max(max, row[v]);
      double sum = 0;
      for (int64_t v = 0; v < s.vocab; ++v)
        sum += std::exp(double(row[v]) - max);
      int32_t target = tokens[size_t(c * n + j + 1)];
      nll += std::log(sum) + max - double(row[target]);
      ++count;
    }
    std::printf("[%lld]%.4f,", (long long)(c + 1), std::exp(nll / count));
    std::fflush(stdout);
  }
  s.promptMs = millisecondsSince(start);
  s.promptTokens = chunks * n;
  std::printf("\nFinal estimate: PPL = %.4f (%lld predictions)\n",
              std::exp(nll / double(count)), (long long)count);
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
