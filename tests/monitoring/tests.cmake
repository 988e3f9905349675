# The KV memory budget end to end: kvserve serve's start log and /metrics gauges for each KV
# dtype the CPU backend accepts (127.0.0.1, default model shapes, random weights).
add_test(NAME monitoring_kv_capacity_endpoint
         COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/test_kv_capacity_endpoint.py
                 --kvserve $<TARGET_FILE:kvserve>
         WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
set_tests_properties(monitoring_kv_capacity_endpoint PROPERTIES LABELS "integration"
                     TIMEOUT 300)
