# The runtime links no LLVM or MLIR library (design contract: it runs on
# boards where neither exists). Every runtime target registers itself with
# moec_runtime_target(); moec_check_runtime_isolation() walks the full link
# closure of each at configure time and fails the configuration if any
# library in it is LLVM or MLIR. test/runtime has the same check on the built
# binaries (readelf), which also catches what CMake cannot see.

function(moec_runtime_target target)
  set_property(GLOBAL APPEND PROPERTY MOEC_RUNTIME_TARGETS ${target})
endfunction()

# Appends to OUT every library reachable from TARGET's link interface.
function(_moec_link_closure target out)
  set(seen "${${out}}")
  set(stack ${target})
  while(stack)
    list(POP_BACK stack item)
    if(item IN_LIST seen)
      continue()
    endif()
    list(APPEND seen ${item})
    if(TARGET ${item})
      get_target_property(aliased ${item} ALIASED_TARGET)
      if(aliased)
        list(APPEND stack ${aliased})
      endif()
      foreach(prop LINK_LIBRARIES INTERFACE_LINK_LIBRARIES)
        get_target_property(libs ${item} ${prop})
        if(libs)
          foreach(lib ${libs})
            # Strip generator expressions such as $<LINK_ONLY:foo>.
            string(REGEX REPLACE "^\\$<[A-Z_]+:(.*)>$" "\\1" lib "${lib}")
            list(APPEND stack ${lib})
          endforeach()
        endif()
      endforeach()
    endif()
  endwhile()
  set(${out} "${seen}" PARENT_SCOPE)
endfunction()

function(moec_check_runtime_isolation)
  get_property(targets GLOBAL PROPERTY MOEC_RUNTIME_TARGETS)
  if(NOT targets)
    message(FATAL_ERROR "no runtime targets registered with moec_runtime_target()")
  endif()
  foreach(target ${targets})
    set(closure "")
    _moec_link_closure(${target} closure)
    foreach(lib ${closure})
      if(lib MATCHES "(^|/|lib)(LLVM|MLIR|mlir|clang)" )
        message(FATAL_ERROR
          "runtime target '${target}' links '${lib}': the runtime must not "
          "link LLVM or MLIR (see shared design contract, 'Artifact and runtime')")
      endif()
    endforeach()
  endforeach()
  list(LENGTH targets n)
  message(STATUS "moec: ${n} runtime targets checked: none links LLVM or MLIR")
endfunction()
