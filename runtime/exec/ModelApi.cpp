//===- ModelApi.cpp - The C interface of a compiled model -----------------===//
//
// runtime/exec/model.h over moec::exec::Model, for the code linked into the
// program. Apart from Model.cpp so that the Model class can be used (by
// tests, by a host of several models) without compiled code linked in.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/model.h"

#include "runtime/exec/Model.h"
#include "runtime/exec/ThreadPool.h"

#include <cstdio>
#include <string>

using moec::exec::Model;

struct moec_model {
  std::unique_ptr<Model> model;
  std::string error;
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
  if (opts->io_mode != 0)
    return fail("io_mode: " + std::to_string(opts->io_mode) +
                    " is not supported (reserved: 0)",
                error, error_size);
  moec::exec::ModelOptions options;
  options.bundlePath = opts->bundle_path;
  options.threads = static_cast<unsigned>(opts->threads);
  std::string message;
  std::unique_ptr<Model> model =
      Model::open(moec::exec::linkedModelCode(), options, message);
  if (!model)
    return fail(message, error, error_size);
  if (error && error_size)
    error[0] = '\0';
  return new moec_model{std::move(model), ""};
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

} // extern "C"
