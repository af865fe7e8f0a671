# cmake -DBINARY=exe -DLIBRARY=lib.a -DSYMBOL=name -P CheckNoLLVMLinked.cmake
#
# SYMBOL is one that both files must define, proving that the check reads
# what it should.
#
# Fails when the executable records a dynamic dependency on LLVM/MLIR/clang
# libraries, or when either file references LLVM or MLIR symbols (llvm:: or
# mlir:: namespaces), which catches statically linked LLVM too.
find_program(READELF NAMES llvm-readelf-22 llvm-readelf readelf
  HINTS /usr/lib/llvm-22/bin REQUIRED)
find_program(NM NAMES llvm-nm-22 llvm-nm nm HINTS /usr/lib/llvm-22/bin REQUIRED)

execute_process(COMMAND ${READELF} --dynamic ${BINARY}
  OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf failed on ${BINARY}")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]*\\]" needed "${dyn}")
if(NOT needed)
  message(FATAL_ERROR "no NEEDED entries read from ${BINARY}: check is broken")
endif()
foreach(entry ${needed})
  if(entry MATCHES "(LLVM|MLIR|clang)")
    message(FATAL_ERROR "${BINARY} links ${entry}: the runtime must not link LLVM or MLIR")
  endif()
endforeach()

foreach(file ${BINARY} ${LIBRARY})
  execute_process(COMMAND ${NM} -C ${file}
    OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm failed on ${file}")
  endif()
  if(NOT syms MATCHES "${SYMBOL}")
    message(FATAL_ERROR "${SYMBOL} not found in ${file}: check is broken")
  endif()
  if(syms MATCHES "(llvm|mlir)::")
    string(REGEX MATCH "[^\n]*(llvm|mlir)::[^\n]*" first "${syms}")
    message(FATAL_ERROR "${file} contains LLVM/MLIR code: ${first}")
  endif()
endforeach()
message(STATUS "${BINARY}: links ${needed}; no LLVM or MLIR")
