# libFuzzer runs in CI (docs/FUZZING.md): one test builds the fuzz targets with clang in
# <build>/fuzz (scripts/fuzz build), then each target runs for 60 s from its seed corpus. The
# fuzz tests hold one resource lock, so they run one after another even under ctest -j2, and
# each has a timeout, so a stuck build or run cannot hang CI.
set(kvserve_fuzz_build_dir ${CMAKE_BINARY_DIR}/fuzz)
set(kvserve_fuzz_seconds 60 CACHE STRING "Seconds each fuzz target runs in ctest")
# A fixed seed: ctest's fuzz runs replay the same mutations every time (a finding reproduces,
# CI does not fail on a new random path); `scripts/fuzz all` without it explores at random.
set(kvserve_fuzz_seed 1 CACHE STRING "libFuzzer -seed for the fuzz runs in ctest")

add_test(NAME fuzz_build COMMAND ${PROJECT_SOURCE_DIR}/scripts/fuzz build)
set_tests_properties(fuzz_build PROPERTIES
  LABELS fuzz TIMEOUT 1200 FIXTURES_SETUP kvserve_fuzz RESOURCE_LOCK kvserve_fuzz
  ENVIRONMENT "KVSERVE_FUZZ_BUILD_DIR=${kvserve_fuzz_build_dir}")

file(GLOB kvserve_fuzz_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*_fuzzer.cpp)
foreach(source ${kvserve_fuzz_sources})
  get_filename_component(target ${source} NAME_WE)
  add_test(NAME fuzz_${target}
           COMMAND ${PROJECT_SOURCE_DIR}/scripts/fuzz ${target} ${kvserve_fuzz_seconds})
  math(EXPR timeout "${kvserve_fuzz_seconds} + 240")
  set_tests_properties(fuzz_${target} PROPERTIES
    LABELS fuzz TIMEOUT ${timeout} FIXTURES_REQUIRED kvserve_fuzz RESOURCE_LOCK kvserve_fuzz
    SKIP_RETURN_CODE 77
    ENVIRONMENT "KVSERVE_FUZZ_BUILD_DIR=${kvserve_fuzz_build_dir};KVSERVE_FUZZ_SEED=${kvserve_fuzz_seed}")
endforeach()
