# Third-party dependencies: all found as imported targets, no hard-coded paths.
# LibTorch: Debian's TorchConfig.cmake by default; any other (e.g. a CUDA build) through
# -DTorch_DIR=... or -DCMAKE_PREFIX_PATH=...
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
if(FUNDUS_WITH_CUDA)
  if(NOT TORCH_CUDA_LIBRARIES AND NOT TARGET torch_cuda)
    message(FATAL_ERROR "FUNDUS_WITH_CUDA=ON, but the LibTorch found in ${Torch_DIR} has no CUDA. Point "
                        "CMAKE_PREFIX_PATH at a CUDA LibTorch, e.g. "
                        "$(python -c 'import torch;print(torch.utils.cmake_prefix_path)')")
  endif()
  # Debian's OpenCV, gtest, httplib and FAISS use the C++11 ABI; wheels before ~2.6 do not (stack.md 7).
  if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
    message(FATAL_ERROR "This LibTorch uses the pre-C++11 ABI (_GLIBCXX_USE_CXX11_ABI=0) and cannot link with "
                        "the system's OpenCV/gtest; use a cxx11-ABI LibTorch (pytorch.org 'cxx11 ABI' zip, or a wheel >= 2.6)")
  endif()
  message(STATUS "Fundus: CUDA build (LibTorch ${Torch_VERSION} in ${Torch_DIR})")
endif()
find_package(OpenCV REQUIRED COMPONENTS core imgcodecs imgproc)
find_package(OpenMP REQUIRED)          # must precede faiss: its config uses OpenMP::OpenMP_CXX
find_package(faiss REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(JPEG REQUIRED)            # libjpeg-turbo: JPEG decoding with corrupt-data checks (data/image_io.h)
find_package(PNG REQUIRED)             # libpng: PNG decoding with warnings that name the file (data/image_io.h)
find_package(CURL REQUIRED)            # libcurl: `fundus model fetch` (model/download.h)
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)  # Debian ships no CMake config

find_path(HNSWLIB_INCLUDE_DIR hnswlib/hnswlib.h REQUIRED)
if(NOT TARGET fundus_hnswlib)
  add_library(fundus_hnswlib INTERFACE)
  target_include_directories(fundus_hnswlib SYSTEM INTERFACE ${HNSWLIB_INCLUDE_DIR})
endif()
