/*===- runtime/abi/abi.c - ABI version checks ------------------------===*/
#include "runtime/abi/moec_abi.h"

#include <stdio.h>

moec_abi_version_t moec_abi_runtime_version(void) {
  moec_abi_version_t v = {MOEC_ABI_VERSION_MAJOR, MOEC_ABI_VERSION_MINOR};
  return v;
}

moec_abi_status_t moec_abi_check(moec_abi_version_t artifact) {
  if (artifact.major != MOEC_ABI_VERSION_MAJOR)
    return MOEC_ABI_MAJOR_MISMATCH;
  if (artifact.minor > MOEC_ABI_VERSION_MINOR)
    return MOEC_ABI_MINOR_TOO_NEW;
  return MOEC_ABI_COMPATIBLE;
}

int moec_abi_describe(moec_abi_status_t status, moec_abi_version_t artifact,
                      char *buf, unsigned long size) {
  const unsigned rtMajor = MOEC_ABI_VERSION_MAJOR;
  const unsigned rtMinor = MOEC_ABI_VERSION_MINOR;
  switch (status) {
  case MOEC_ABI_COMPATIBLE:
    return snprintf(buf, size,
                    "artifact ABI %u.%u runs on runtime ABI %u.%u",
                    (unsigned)artifact.major, (unsigned)artifact.minor,
                    rtMajor, rtMinor);
  case MOEC_ABI_MAJOR_MISMATCH:
    return snprintf(buf, size,
                    "artifact was compiled for ABI %u.%u but this runtime "
                    "implements ABI %u.%u: recompile the model with a moec "
                    "that matches this runtime",
                    (unsigned)artifact.major, (unsigned)artifact.minor,
                    rtMajor, rtMinor);
  case MOEC_ABI_MINOR_TOO_NEW:
    return snprintf(buf, size,
                    "artifact needs ABI %u.%u but this runtime only has "
                    "%u.%u: update the runtime",
                    (unsigned)artifact.major, (unsigned)artifact.minor,
                    rtMajor, rtMinor);
  }
  return snprintf(buf, size, "unknown ABI status %d", (int)status);
}
