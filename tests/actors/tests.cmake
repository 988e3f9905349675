# actors_tests links the CPU backend (model/) and the cache (cache/), which currently both
# define kvserve::is_supported_block_size identically. TODO: remove once one of them drops it.
if(TARGET actors_tests)
  target_link_options(actors_tests PRIVATE -Wl,--allow-multiple-definition)
endif()
