# Issue 9's token-count and hit-rate checks on a real server that preempts (127.0.0.1, CPU
# backend, default model shapes with random weights, a KV pool of 8 blocks).
add_test(NAME bench_serve_checks_under_preemption
         COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/test_bench_serve_preemption.py
                 --kvserve $<TARGET_FILE:kvserve>
         WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
set_tests_properties(bench_serve_checks_under_preemption PROPERTIES LABELS "integration"
                     TIMEOUT 300)
