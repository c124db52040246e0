# fundus_component(NAME <name> [TORCH] [PCH] DEPS <targets...>)
# Builds the static library fundus_<name> from src/<name>/*.cpp with public headers in
# include/fundus/<name>/. TORCH links LibTorch; PCH additionally precompiles <torch/torch.h> and
# OpenCV's core header for every TU of the component (only for components whose TUs mostly use torch).
set(FUNDUS_COMPONENTS "" CACHE INTERNAL "")

function(fundus_component)
  cmake_parse_arguments(C "TORCH;PCH" "NAME" "DEPS" ${ARGN})
  set(tgt fundus_${C_NAME})
  file(GLOB srcs CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/src/${C_NAME}/*.cpp")
  if(NOT srcs)
    set(srcs "${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cpp")  # component not written yet
  endif()
  add_library(${tgt} STATIC ${srcs})
  add_library(fundus::${C_NAME} ALIAS ${tgt})
  target_include_directories(${tgt} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  target_compile_features(${tgt} PUBLIC cxx_std_17)
  fundus_warnings(${tgt})
  set_target_properties(${tgt} PROPERTIES POSITION_INDEPENDENT_CODE ON EXPORT_NAME ${C_NAME})
  target_link_libraries(${tgt} PUBLIC ${C_DEPS})
  if(C_TORCH)
    # OpenMP on every torch target: torch runs on OpenMP, and the shared PCH requires identical flags.
    target_link_libraries(${tgt} PUBLIC torch OpenMP::OpenMP_CXX)
  endif()
  if(C_PCH)
    fundus_use_torch_pch(${tgt})
  endif()
  set(FUNDUS_COMPONENTS ${FUNDUS_COMPONENTS} ${tgt} CACHE INTERNAL "")
endfunction()

function(fundus_warnings tgt)
  target_compile_options(${tgt} PRIVATE -Wall -Wextra -Wno-unused-parameter
    # __FILE__ in error messages relative to the source tree (no machine paths in binaries).
    -fmacro-prefix-map=${PROJECT_SOURCE_DIR}/=)
endfunction()

# One precompiled header for LibTorch + OpenCV, built once by fundus_pch and reused by every
# torch-heavy target (same flags everywhere, so GCC accepts the .gch).
function(fundus_use_torch_pch tgt)
  if(NOT FUNDUS_USE_PCH)
    return()
  endif()
  if(NOT TARGET fundus_pch)
    add_library(fundus_pch STATIC "${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cpp")
    target_link_libraries(fundus_pch PUBLIC torch opencv_core OpenMP::OpenMP_CXX)
    fundus_warnings(fundus_pch)
    set_target_properties(fundus_pch PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_precompile_headers(fundus_pch PRIVATE <torch/torch.h> <opencv2/core.hpp>)
  endif()
  target_precompile_headers(${tgt} REUSE_FROM fundus_pch)
endfunction()
