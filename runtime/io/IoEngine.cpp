//===- IoEngine.cpp - Reading expert extents from storage -----------------===//

#include "runtime/io/IoEngine.h"

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace moec::io {

int openForStreaming(const std::string &path, bool preferDirect,
                     bool &direct) {
  direct = false;
  if (preferDirect) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd >= 0) {
      direct = true;
      return fd;
    }
    if (errno != EINVAL) // EINVAL: the file system has no O_DIRECT
      return -1;
  }
  return ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
}

namespace {

/// Reads all of `r`, retrying short reads; returns 0 or an errno.
int readFully(const ReadRequest &r) {
  uint64_t done = 0;
  while (done < r.size) {
    ssize_t n = ::pread(r.fd, r.destination + done, r.size - done,
                        static_cast<off_t>(r.offset + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno;
    if (n == 0)
      return EIO; // past the end of the file
    done += static_cast<uint64_t>(n);
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// pread thread pool
//===----------------------------------------------------------------------===//

class PreadPool : public IoEngine {
public:
  explicit PreadPool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i)
      workers.emplace_back([this] { work(); });
  }
  ~PreadPool() override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    queued.notify_all();
    for (std::thread &t : workers)
      t.join();
  }
  const char *getName() const override { return "pread"; }
  void submit(const std::vector<ReadRequest> &requests) override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (const ReadRequest &r : requests)
        queue.push_back(r);
      pending += requests.size();
    }
    queued.notify_all();
  }
  size_t poll(std::vector<Completion> &out, bool block) override {
    std::unique_lock<std::mutex> lock(mutex);
    if (block)
      completed.wait(lock, [&] { return !done.empty() || pending == 0; });
    size_t n = done.size();
    out.insert(out.end(), done.begin(), done.end());
    done.clear();
    return n;
  }
  size_t getPending() const override {
    std::lock_guard<std::mutex> lock(mutex);
    return pending;
  }

private:
  void work() {
    for (;;) {
      ReadRequest r;
      {
        std::unique_lock<std::mutex> lock(mutex);
        queued.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty())
          return;
        r = queue.front();
        queue.pop_front();
      }
      int error = readFully(r);
      {
        std::lock_guard<std::mutex> lock(mutex);
        done.push_back({r.tag, error});
        --pending;
      }
      completed.notify_all();
    }
  }

  mutable std::mutex mutex;
  std::condition_variable queued, completed;
  std::deque<ReadRequest> queue;
  std::vector<Completion> done;
  size_t pending = 0;
  bool stopping = false;
  std::vector<std::thread> workers;
};

//===----------------------------------------------------------------------===//
// io_uring
//===----------------------------------------------------------------------===//

class IoUring : public IoEngine {
public:
  static std::unique_ptr<IoUring> create(unsigned depth, std::string &error) {
    std::unique_ptr<IoUring> e(new IoUring());
    int rc = io_uring_queue_init(depth, &e->ring, 0);
    if (rc < 0) {
      error = std::string("io_uring is not available: ") + std::strerror(-rc);
      return nullptr;
    }
    e->depth = depth;
    return e;
  }
  ~IoUring() override { io_uring_queue_exit(&ring); }
  const char *getName() const override { return "io_uring"; }

  void submit(const std::vector<ReadRequest> &requests) override {
    for (const ReadRequest &r : requests)
      backlog.push_back({r, 0});
    fill();
  }

  size_t poll(std::vector<Completion> &out, bool block) override {
    size_t appended = 0;
    for (;;) {
      io_uring_cqe *cqe = nullptr;
      int rc = (block && appended == 0 && inFlight > 0)
                   ? io_uring_wait_cqe(&ring, &cqe)
                   : io_uring_peek_cqe(&ring, &cqe);
      if (rc < 0 || !cqe)
        break;
      auto *op = static_cast<Op *>(io_uring_cqe_get_data(cqe));
      int res = cqe->res;
      io_uring_cqe_seen(&ring, cqe);
      --inFlight;
      if (res > 0 && op->done + uint64_t(res) < op->request.size) {
        op->done += uint64_t(res); // short read: read the rest
        backlog.push_front(*op);
        delete op;
      } else {
        out.push_back({op->request.tag, res < 0 ? -res : res == 0 ? EIO : 0});
        ++appended;
        delete op;
      }
      fill();
    }
    return appended;
  }

  size_t getPending() const override { return inFlight + backlog.size(); }

private:
  struct Op {
    ReadRequest request;
    uint64_t done;
  };
  IoUring() = default;

  void fill() {
    bool queuedAny = false;
    while (!backlog.empty() && inFlight < depth) {
      io_uring_sqe *sqe = io_uring_get_sqe(&ring);
      if (!sqe)
        break;
      Op *op = new Op(backlog.front());
      backlog.pop_front();
      io_uring_prep_read(sqe, op->request.fd,
                         op->request.destination + op->done,
                         static_cast<unsigned>(op->request.size - op->done),
                         op->request.offset + op->done);
      io_uring_sqe_set_data(sqe, op);
      ++inFlight;
      queuedAny = true;
    }
    if (queuedAny)
      io_uring_submit(&ring);
  }

  io_uring ring{};
  unsigned depth = 0;
  size_t inFlight = 0;
  std::deque<Op> backlog;
};

/// A test hook: MOEC_IO_FAULT=eio@N fails the N-th read (from 1) with EIO;
/// short@N reads only the first half of it and reports success (what a
/// device that loses data without saying so does; checksums catch it).
class FaultInjector : public IoEngine {
public:
  FaultInjector(std::unique_ptr<IoEngine> inner, bool shortRead,
                uint64_t which)
      : inner(std::move(inner)), shortRead(shortRead), which(which) {
    name = std::string(this->inner->getName()) + " with an injected fault";
  }
  const char *getName() const override { return name.c_str(); }
  void submit(const std::vector<ReadRequest> &requests) override {
    std::vector<ReadRequest> pass;
    for (ReadRequest r : requests) {
      if (++count == which) {
        if (!shortRead) {
          failed.push_back({r.tag, EIO});
          continue;
        }
        r.size = std::max<uint64_t>(r.size / 2 / 4096 * 4096, 4096);
      }
      pass.push_back(r);
    }
    if (!pass.empty())
      inner->submit(pass);
  }
  size_t poll(std::vector<Completion> &out, bool block) override {
    if (!failed.empty()) {
      out.insert(out.end(), failed.begin(), failed.end());
      size_t n = failed.size();
      failed.clear();
      return n;
    }
    return inner->poll(out, block);
  }
  size_t getPending() const override {
    return inner->getPending() + failed.size();
  }

private:
  std::unique_ptr<IoEngine> inner;
  bool shortRead;
  uint64_t which, count = 0;
  std::vector<Completion> failed;
  std::string name;
};

/// A test hook: MOEC_IO_FAULT=slow@MS hands each read's completion out no
/// sooner than MS milliseconds after it was submitted (storage slower than
/// compute, so that the overlap of compute with reads is exercised
/// deterministically).
class SlowReads : public IoEngine {
public:
  using Clock = std::chrono::steady_clock;
  SlowReads(std::unique_ptr<IoEngine> inner, uint64_t millis)
      : inner(std::move(inner)), delay(std::chrono::milliseconds(millis)) {
    name = std::string(this->inner->getName()) + " with slowed reads";
  }
  const char *getName() const override { return name.c_str(); }
  void submit(const std::vector<ReadRequest> &requests) override {
    for (const ReadRequest &r : requests)
      due[r.tag] = Clock::now() + delay;
    inner->submit(requests);
  }
  size_t poll(std::vector<Completion> &out, bool block) override {
    size_t handed = 0;
    while (true) {
      std::vector<Completion> landed;
      // Waits in the inner engine only when nothing is held back.
      inner->poll(landed, block && held.empty());
      held.insert(held.end(), landed.begin(), landed.end());
      Clock::time_point now = Clock::now(), earliest = Clock::time_point::max();
      for (size_t i = 0; i < held.size();) {
        Clock::time_point at = due[held[i].tag];
        if (at <= now) {
          out.push_back(held[i]);
          due.erase(held[i].tag);
          held.erase(held.begin() + long(i));
          ++handed;
        } else {
          earliest = std::min(earliest, at);
          ++i;
        }
      }
      if (handed || !block || held.empty())
        return handed;
      std::this_thread::sleep_until(earliest);
    }
  }
  size_t getPending() const override {
    return inner->getPending() + held.size();
  }

private:
  std::unique_ptr<IoEngine> inner;
  Clock::duration delay;
  std::map<uint64_t, Clock::time_point> due;
  std::vector<Completion> held;
  std::string name;
};

std::unique_ptr<IoEngine> createEngine(EngineKind kind, unsigned depth,
                                       std::string &error);

} // namespace

std::unique_ptr<IoEngine> IoEngine::create(EngineKind kind, unsigned depth,
                                           std::string &error) {
  std::unique_ptr<IoEngine> engine = createEngine(kind, depth, error);
  const char *fault = std::getenv("MOEC_IO_FAULT");
  if (!engine || !fault || !*fault)
    return engine;
  std::string spec(fault);
  size_t at = spec.find('@');
  std::string what = spec.substr(0, at);
  uint64_t which = at == std::string::npos
                       ? 0
                       : std::strtoull(spec.c_str() + at + 1, nullptr, 10);
  if ((what != "eio" && what != "short" && what != "slow") || which == 0) {
    error = "MOEC_IO_FAULT: '" + spec + "' is not eio@N, short@N or slow@MS";
    return nullptr;
  }
  if (what == "slow")
    return std::make_unique<SlowReads>(std::move(engine), which);
  return std::make_unique<FaultInjector>(std::move(engine), what == "short",
                                         which);
}

namespace {
std::unique_ptr<IoEngine> createEngine(EngineKind kind, unsigned depth,
                                       std::string &error) {
  if (depth == 0)
    depth = 1;
  if (kind != EngineKind::PreadPool) {
    std::string why;
    if (std::unique_ptr<IoUring> ring = IoUring::create(depth, why))
      return ring;
    if (kind == EngineKind::IoUring) {
      error = why;
      return nullptr;
    }
  }
  unsigned threads = std::max(1u, std::min(depth, 8u));
  return std::make_unique<PreadPool>(threads);
}
} // namespace

} // namespace moec::io
