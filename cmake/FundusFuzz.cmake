# FUNDUS_FUZZ=ON: libFuzzer harnesses (fuzz/) with AddressSanitizer and UndefinedBehaviorSanitizer.
# clang only (libFuzzer ships with clang). Every target of this build is instrumented, so the
# library code a harness reaches is checked too; the normal gcc build never includes this file.
# Configure through scripts/fuzz.sh, which uses its own build folder (build-fuzz/).
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "FUNDUS_FUZZ=ON needs clang (libFuzzer); got ${CMAKE_CXX_COMPILER_ID}. "
                      "Use scripts/fuzz.sh or -DCMAKE_CXX_COMPILER=clang++.")
endif()
# fuzzer-no-link: coverage instrumentation for libFuzzer; the fuzz targets add -fsanitize=fuzzer.
# -fno-sanitize-recover: undefined behaviour stops the run like a crash, so it is never missed.
add_compile_options(-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all
                    -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
# LibTorch is not instrumented; UBSan's vptr check on its classes reports false positives.
add_compile_options(-fno-sanitize=vptr)
# Third-party code with a known, harmless report (reasons in the file).
# The old spelling of -fsanitize-ignorelist: ccache (4.7) hashes the list's content only under it.
add_compile_options(-fsanitize-blacklist=${PROJECT_SOURCE_DIR}/fuzz/sanitizer_ignorelist.txt)
# Runtime options of every sanitized run (ctest entries here; scripts/fuzz.sh sets the same).
set(FUNDUS_SANITIZER_ENV "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/fuzz/lsan_suppressions.txt"
    "UBSAN_OPTIONS=print_stacktrace=1")
enable_testing()
