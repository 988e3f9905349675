# The two commands of the README. Both set the machine up first (idempotent).
.PHONY: run test build setup format gpu-bundle

JOBS ?= $(shell nproc)

setup:
	scripts/setup --no-build

build: setup
	KVSERVE_JOBS=$(JOBS) scripts/build

run: build
	scripts/run

test: build
	cd build && ctest --output-on-failure -j $(JOBS) --timeout 900

format:
	git ls-files '*.hpp' '*.cpp' '*.cu' '*.cuh' | xargs clang-format -i

gpu-bundle:
	scripts/gpu_bundle
