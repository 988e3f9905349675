# End-to-end tests of the network layer: real clients (openai, websockets, curl, headless
# Chromium, a real Prometheus) against build/bin/kvserve serve on 127.0.0.1 with the default
# model's shapes and random weights (--load-format dummy).
set(kvserve_net_py ${CMAKE_CURRENT_LIST_DIR})

function(kvserve_net_py_test name script timeout)
  add_test(NAME ${name}
           COMMAND python3 ${kvserve_net_py}/${script} --kvserve $<TARGET_FILE:kvserve>
           WORKING_DIRECTORY ${kvserve_net_py})
  set_tests_properties(${name} PROPERTIES LABELS "net;integration" TIMEOUT ${timeout})
endfunction()

kvserve_net_py_test(net_openai_client test_openai_client.py 300)
kvserve_net_py_test(net_websocket_client test_websocket_client.py 300)
kvserve_net_py_test(net_playground_browser test_playground_browser.py 300)
kvserve_net_py_test(net_prometheus_dashboard test_prometheus_dashboard.py 300)

# The soak: 200 clients for about a minute (bounded at 2). -DKVSERVE_NET_SOAK_TEST=OFF skips it.
option(KVSERVE_NET_SOAK_TEST "Register the network soak test" ON)
if(KVSERVE_NET_SOAK_TEST)
  kvserve_net_py_test(net_soak test_soak.py 400)
endif()
