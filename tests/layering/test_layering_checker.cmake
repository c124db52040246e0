# The layering check can fail: run cmake/FundusCheckLayering.cmake on tests/layering/planted, a tree
# with one violation of each kind, and require a non-zero exit naming every one of them at its line.
#   cmake -DCHECKER=<cmake/FundusCheckLayering.cmake> -DPLANTED=<tests/layering/planted> -P test_layering_checker.cmake
execute_process(
  COMMAND ${CMAKE_COMMAND} -DROOT=${PLANTED} -DTABLE=${PLANTED}/table.cmake -DDOC=${PLANTED}/architecture.md
          -P ${CHECKER}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(out "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the checker passed a tree with planted violations:\n${out}")
endif()
set(expected
  "include/fundus/index/planted.h:5: component 'index' includes fundus/store/case_store.h, but 'index' may use only: core"
  "src/eval/planted.cpp:2: component 'eval' includes a LibTorch header but does not link LibTorch"
  "architecture.md:7: 'index' is documented to link 'core, store' but src/CMakeLists.txt links 'core'"
  "architecture.md:7: 'index' LibTorch column 'yes' disagrees"
  "architecture.md: component 'eval' has no row"
  "layering: 5 violation")
foreach(e IN LISTS expected)
  string(FIND "${out}" "${e}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "the checker's output lacks '${e}':\n${out}")
  endif()
endforeach()
# Allowed includes are not reported: the store's own header, core from index, metrics from eval.
foreach(e "planted.h:4" "planted.cpp:4")
  string(FIND "${out}" "${e}" pos)
  if(NOT pos EQUAL -1)
    message(FATAL_ERROR "the checker reported an allowed include (${e}):\n${out}")
  endif()
endforeach()
message(STATUS "the layering checker found the 5 planted violations")
