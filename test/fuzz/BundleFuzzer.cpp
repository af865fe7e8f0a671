//===- BundleFuzzer.cpp - libFuzzer target for the runtime's bundle reader ===//
//
// Opens arbitrary bytes as a weight bundle (through a memory file, as the
// runtime reads a path) and, when they open, reads every tensor and extent.
//
//===----------------------------------------------------------------------===//

#include "runtime/bundle/Bundle.h"

#include <string>
#include <sys/mman.h>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("fuzz.moeb", 0);
  if (fd < 0)
    return 0;
  if (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) {
    close(fd);
    return 0;
  }
  std::string error;
  auto b = moec::bundle::Bundle::open("/proc/self/fd/" + std::to_string(fd),
                                      error);
  if (b) {
    std::vector<uint8_t> buffer;
    for (const moec_bundle_tensor &t : b->getTensors()) {
      (void)b->getTensorName(t);
      b->readTensor(t, buffer, error);
    }
    for (const moec_bundle_expert &e : b->getExperts()) {
      buffer.resize(e.size);
      b->readExpert(e, buffer.data(), error);
    }
  }
  close(fd);
  return 0;
}
