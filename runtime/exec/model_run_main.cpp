//===- model_run_main.cpp - out/model-run, the compiled model's program ---===//
//
// The main of `model-run`, which moec links with the compiled model code
// and the runtime into out/model-run:
//
//   model-run [-m BUNDLE] --prompt-ids 1,2,3 [-n N] [-t N] [--logits-out F]
//
// runs the prompt, then N greedy steps (argmax, lowest id on ties), prints
// the N generated ids on stdout on one line, and timings on stderr the way
// llama.cpp does. --logits-out writes the float32 logits after every token
// evaluated (each prompt token, then each generated token but the last,
// which is never evaluated) as raw little-endian rows of vocab_size floats:
// prompt + max(N - 1, 0) rows, what tests compare with the reference
// executor. Errors are one line naming the flag or file, exit code 1.
//
// Only the C interface (model.h) is used: this is also its example.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/model.h"

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

const char *const kUsage =
    "usage: model-run [-m BUNDLE] --prompt-ids ID,ID,... [-n N] [-t N]\n"
    "                 [--logits-out FILE]\n"
    "\n"
    "Runs the compiled model on a prompt of token ids and prints the ids it\n"
    "generates greedily, on one line.\n"
    "\n"
    "  -m, --model BUNDLE     the weight bundle (default: model.moeb beside\n"
    "                         this program)\n"
    "  --prompt-ids LIST      the prompt, comma-separated token ids\n"
    "  -n, --n-predict N      tokens to generate (default 16)\n"
    "  -t, --threads N        compute threads (default: the CPUs available,\n"
    "                         at most 64)\n"
    "  --logits-out FILE      write the float32 logits after every token\n"
    "                         evaluated, one row of vocab floats each\n"
    "  -h, --help             this text\n";

[[noreturn]] void die(const std::string &message) {
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

int32_t argmax(const float *logits, int64_t n) {
  int32_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    // Strictly greater: the lowest id wins ties; a NaN never wins.
    if (logits[i] > logits[best] ||
        (logits[best] != logits[best] && logits[i] == logits[i]))
      best = int32_t(i);
  return best;
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

} // namespace

int main(int argc, char **argv) {
  std::string bundle, logitsPath;
  std::vector<int32_t> prompt;
  bool havePrompt = false;
  long long predict = 16, threads = 0;

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
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "-m" || arg == "--model") {
      bundle = takeValue();
      if (bundle.empty())
        die(arg + ": needs a value");
    } else if (arg == "--prompt-ids") {
      std::string list = takeValue();
      havePrompt = true;
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos)
          comma = list.size();
        std::string id = list.substr(start, comma - start);
        prompt.push_back(int32_t(parseInt("--prompt-ids", id, 0, INT32_MAX)));
        start = comma + 1;
      }
    } else if (arg == "-n" || arg == "--n-predict") {
      predict = parseInt(arg, takeValue(), 0, INT32_MAX);
    } else if (arg == "-t" || arg == "--threads") {
      threads = parseInt(arg, takeValue(), 1, 512);
    } else if (arg == "--logits-out") {
      logitsPath = takeValue();
      if (logitsPath.empty())
        die(arg + ": needs a value");
    } else if (arg == "-p" || arg == "--prompt") {
      die(arg + ": text prompts need the tokenizer, which this model-run "
                "does not have yet: pass token ids with --prompt-ids");
    } else {
      die("unknown option '" + std::string(argv[i]) +
          "' (model-run --help lists them)");
    }
  }
  if (!havePrompt)
    die("--prompt-ids: required (the prompt as comma-separated token ids)");
  if (bundle.empty())
    bundle = defaultBundlePath();

  auto loadStart = std::chrono::steady_clock::now();
  moec_model_options options = {};
  options.bundle_path = bundle.c_str();
  options.threads = int(threads);
  char error[1024];
  moec_model *model = moec_model_open(&options, error, sizeof(error));
  if (!model)
    die(error);
  double loadMs = millisecondsSince(loadStart);

  int64_t vocab = moec_model_vocab_size(model);
  int64_t context = moec_model_context_length(model);
  for (int32_t id : prompt)
    if (id >= vocab)
      die("--prompt-ids: " + std::to_string(id) +
          " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
  if (int64_t(prompt.size()) > context)
    die("--prompt-ids: " + std::to_string(prompt.size()) +
        " tokens do not fit the model's context of " + std::to_string(context));
  // The last generated token is never evaluated.
  int64_t evaluated = int64_t(prompt.size()) + (predict ? predict - 1 : 0);
  if (evaluated > context)
    die("-n: the prompt (" + std::to_string(prompt.size()) + " tokens) and " +
        std::to_string(predict) +
        " generated tokens do not fit the model's "
        "context of " +
        std::to_string(context));

  LogitsFile logits;
  if (!logitsPath.empty())
    logits.open(logitsPath);
  auto check = [&](int rc) {
    if (rc != 0) {
      std::string message = moec_model_error(model);
      logits.discard();
      die(message);
    }
  };

  auto promptStart = std::chrono::steady_clock::now();
  if (logits.isOpen()) {
    std::vector<float> rows(prompt.size() * size_t(vocab));
    check(moec_model_eval_all(model, prompt.data(), int64_t(prompt.size()),
                              rows.data()));
    logits.write(rows.data(), int64_t(rows.size()));
  } else {
    check(moec_model_prefill(model, prompt.data(), int64_t(prompt.size())));
  }
  double promptMs = millisecondsSince(promptStart);

  std::vector<int32_t> generated;
  auto evalStart = std::chrono::steady_clock::now();
  for (long long step = 0; step < predict; ++step) {
    int32_t next = argmax(moec_model_logits(model), vocab);
    generated.push_back(next);
    if (step + 1 == predict)
      break;
    check(moec_model_decode(model, next));
    if (logits.isOpen())
      logits.write(moec_model_logits(model), vocab);
  }
  double evalMs = millisecondsSince(evalStart);
  logits.commit();

  std::string line;
  for (size_t i = 0; i < generated.size(); ++i)
    line += (i ? " " : "") + std::to_string(generated[i]);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);

  long long decodes = predict ? predict - 1 : 0;
  std::fprintf(stderr, "model-run: %16s = %10.2f ms\n", "load time", loadMs);
  printTiming("prompt eval time", promptMs, (long long)prompt.size(), "tokens");
  printTiming("eval time", evalMs, decodes, "runs");
  std::fprintf(
      stderr, "model-run: %16s = %10.2f ms / %5lld tokens (%d threads)\n",
      "total time", loadMs + promptMs + evalMs,
      (long long)prompt.size() + decodes, moec_model_thread_count(model));
  moec_model_close(model);
  return 0;
}
