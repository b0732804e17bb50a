# sRPC: the two entry points are `make demo` (the main job) and `make test`.
CARGO ?= cargo

.PHONY: deps build test lint fmt fuzz demo bench policy policy-test

deps:
	./scripts/install-deps

build: deps
	$(CARGO) build --workspace --all-targets

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Format and lint first (cheap, and clippy shares the build with the tests).
test: lint policy-test
	$(CARGO) test --workspace

# The SELinux policy module (policy-module/, docs/selinux.md): build srpcd.pp.
policy: deps
	$(MAKE) -C policy-module

# selint, then the policy decision tests: the module and the example module linked
# into a copy of the installed policy store, decisions asked offline (no SELinux
# kernel needed).
policy-test: deps
	$(MAKE) -C policy-module test

# The main job: srpcd serving a demo tree that a client calls (root).
demo:
	./scripts/demo

# Figures, not a test: echo calls through srpcd against a direct Unix socket (root).
bench:
	./scripts/bench

fmt:
	$(CARGO) fmt --all

# 1,000,000 executions per target (cargo install cargo-fuzz first; see fuzz/README.md).
fuzz:
	cd fuzz && ./seed-from-spec.sh
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode_frame -- -runs=1000000 -print_final_stats=1
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run roundtrip -- -runs=1000000 -print_final_stats=1
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run deframer -- -runs=1000000 -print_final_stats=1
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ipc_to_monitor -- -runs=1000000 -print_final_stats=1
