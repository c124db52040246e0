# FUNDUS_SANITIZE=ON: the whole build (library, CLI, tests) with AddressSanitizer and
# UndefinedBehaviorSanitizer, so the unit tests run instrumented (scripts/sanitize.sh). clang only:
# it shares the ignore list and suppressions of the fuzz build (fuzz/). Use its own build folder.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "FUNDUS_SANITIZE=ON expects clang (shared ignore list with the fuzz build); got "
                      "${CMAKE_CXX_COMPILER_ID}. Use scripts/sanitize.sh or -DCMAKE_CXX_COMPILER=clang++.")
endif()
# -fno-sanitize-recover: undefined behaviour fails the test like a crash, so it is never missed.
# -O1 and line tables: the usual sanitizer trade-off (readable stacks, quick builds, ~2x slower tests).
add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -gline-tables-only)
add_link_options(-fsanitize=address,undefined)
# LibTorch is not instrumented; UBSan's vptr check on its classes reports false positives.
add_compile_options(-fno-sanitize=vptr)
add_compile_options(-fsanitize-blacklist=${PROJECT_SOURCE_DIR}/fuzz/sanitizer_ignorelist.txt)
