# Compiler-agnostic settings shared by every target of the project.

# ccache where present: rebuilds on CI and developer machines are cheap.
find_program(MOEC_CCACHE ccache)
if(MOEC_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER "${MOEC_CCACHE}")
  set(CMAKE_CXX_COMPILER_LAUNCHER "${MOEC_CCACHE}")
endif()

# lld links libMLIR/libLLVM-heavy tools several times faster than GNU ld.
option(MOEC_USE_LLD "Link with lld" ON)
if(MOEC_USE_LLD)
  add_link_options(-fuse-ld=lld)
endif()

# The project never builds for the build machine's own CPU (-march=native):
# machines differ from session to session and code must run on all of them.
add_compile_options(-Wall -Wextra -Wno-unused-parameter)
