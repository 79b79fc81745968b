# Entry points for people; CI runs .ci/run, which calls `make test`.
PREFIX ?= $(HOME)/.local
PROFILE ?= release
SCENARIO ?=
CARGO ?= cargo

ifeq ($(PROFILE),release)
CARGO_PROFILE_FLAG := --release
else
CARGO_PROFILE_FLAG :=
endif

.PHONY: build install test lint cluster bench

build:
	$(CARGO) build --workspace $(CARGO_PROFILE_FLAG)

## install: the four plugins into $(PREFIX)/bin, with the names `oc` and `kubectl` look up
install: build
	scripts/install.sh target/$(PROFILE) $(PREFIX)

## test: the whole suite (unit tests, and integration tests against a real control plane).
## The integration tests run the plugin binaries, which `cargo test` alone does not build.
test:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## cluster: a real control plane in the foreground (SCENARIO=<name> adds the mesh simulator)
cluster:
	$(CARGO) run -q -p oc-ambient-simulator --bin oc-ambient-cluster -- $(if $(SCENARIO),--scenario $(SCENARIO))

## bench: oc-ambient-check on the `large` scenario vs the guide's Step 1 script (BENCHMARKS.md)
BENCH_SIZES ?= 100x3x1 1000x3x1
bench:
	$(CARGO) build --release --bins
	$(CARGO) bench -p oc-ambient-tests --bench check -- $(BENCH_SIZES)
