# Finds Debian's LLVM/MLIR 22 and sets up TableGen and lit for the compiler.
# MLIR's version file accepts only exact versions; check the major ourselves.
find_package(MLIR REQUIRED CONFIG)
if(NOT LLVM_VERSION_MAJOR EQUAL 22)
  message(FATAL_ERROR "moec needs LLVM/MLIR 22, found ${LLVM_PACKAGE_VERSION} "
    "at ${MLIR_DIR}: pass -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir")
endif()
message(STATUS "moec: MLIR from ${MLIR_DIR}, LLVM ${LLVM_PACKAGE_VERSION}")

list(APPEND CMAKE_MODULE_PATH "${MLIR_CMAKE_DIR}" "${LLVM_CMAKE_DIR}")
# AddMLIR's doc and tablegen helpers expect these in out-of-tree builds.
set(LLVM_RUNTIME_OUTPUT_INTDIR ${CMAKE_BINARY_DIR}/bin)
set(LLVM_LIBRARY_OUTPUT_INTDIR ${CMAKE_BINARY_DIR}/lib)
set(MLIR_BINARY_DIR ${CMAKE_BINARY_DIR})
# Debian's config names the tool without a path; use LLVM 22's own.
set(MLIR_TABLEGEN_EXE "${LLVM_TOOLS_BINARY_DIR}/mlir-tblgen")
if(NOT EXISTS "${MLIR_TABLEGEN_EXE}")
  message(FATAL_ERROR "mlir-tblgen not found at ${MLIR_TABLEGEN_EXE}: install mlir-22-tools")
endif()
include(TableGen)
include(AddLLVM)
include(AddMLIR)

set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)

# Directory-scoped so that mlir_tablegen sees them too. This runs after the
# runtime's targets exist, which therefore never see LLVM's headers.
include_directories(${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
include_directories(SYSTEM ${LLVM_INCLUDE_DIRS} ${MLIR_INCLUDE_DIRS})

# LLVM is built without exceptions; RTTI is on in Debian's build.
if(NOT LLVM_ENABLE_EH)
  set(MOEC_COMPILER_CXX_FLAGS -fno-exceptions)
endif()
if(NOT LLVM_ENABLE_RTTI)
  list(APPEND MOEC_COMPILER_CXX_FLAGS -fno-rtti)
endif()

# Debian's config leaves LLVM_EXTERNAL_LIT empty; the setup script passes it.
if(NOT LLVM_EXTERNAL_LIT)
  find_program(LLVM_EXTERNAL_LIT NAMES lit llvm-lit
    HINTS ${LLVM_TOOLS_BINARY_DIR} REQUIRED)
endif()
find_program(MOEC_FILECHECK FileCheck HINTS ${LLVM_TOOLS_BINARY_DIR} REQUIRED)

# add_mlir_doc attaches every dialect's doc target to `mlir-doc` (AddMLIR
# creates it in out-of-tree builds too).
if(NOT TARGET mlir-doc)
  add_custom_target(mlir-doc)
endif()

# Declares a compiler-side library: one include root at the repository root
# (plus the build tree for generated .inc files), linked against the shared
# MLIR and LLVM libraries as Debian's CMake config provides them.
function(moec_compiler_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS;LINK_LIBS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC
    ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_include_directories(${name} SYSTEM PUBLIC
    ${LLVM_INCLUDE_DIRS} ${MLIR_INCLUDE_DIRS})
  separate_arguments(llvm_defs UNIX_COMMAND "${LLVM_DEFINITIONS}")
  target_compile_options(${name} PUBLIC ${llvm_defs})
  target_compile_options(${name} PUBLIC ${MOEC_COMPILER_CXX_FLAGS})
  target_link_libraries(${name} PUBLIC ${ARG_LINK_LIBS} MLIR LLVM)
  if(ARG_DEPENDS)
    add_dependencies(${name} ${ARG_DEPENDS})
  endif()
endfunction()
