# Two commands matter: `make dev` (set up, run locally) and `make test` (set up, pass all tests).
SHELL := /bin/bash
.DEFAULT_GOAL := help

export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/node_modules/.bin:$(PATH)
# worker-build would download these; point it at the pinned, project-local copies instead.
export WASM_BINDGEN_BIN := $(CURDIR)/.tools/bin/wasm-bindgen
export WASM_OPT_BIN := $(CURDIR)/node_modules/.bin/wasm-opt
export ESBUILD_BIN := $(CURDIR)/node_modules/.bin/esbuild
# Keep wrangler offline: no telemetry, no request.cf lookup.
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false

# The settings page, the embed widget and the OpenAPI document are static assets (build/assets,
# the [assets] of wrangler.toml, with their headers in assets/_headers), staged next to the wasm
# so both deploy and version together; changing one does not rebuild the wasm.
SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock
ASSETS := $(shell find assets -type f) openapi.json

.PHONY: help setup build dev test lint unit e2e size bench

help:
	@echo "make dev   - set everything up and run the service on 127.0.0.1:$${PORT:-8787}"
	@echo "make test  - set everything up and run every check and test"
	@echo "make bench - gateway overhead against an instant LLM, side by side"

setup:
	@scripts/setup.sh

build: build/index.js build/.assets-staged

build/index.js: $(SOURCES)
	worker-build --release
	python3 scripts/strip_names.py build/index_bg.wasm
	rm -f build/.assets-staged
	@$(MAKE) -s build/.assets-staged

build/.assets-staged: $(ASSETS)
	rm -rf build/assets && mkdir -p build/assets/api
	cp -R assets/settings assets/embed assets/_headers build/assets/
	cp openapi.json build/assets/api/openapi.json
	touch $@

dev: setup build
	@scripts/dev.sh

test: setup lint unit build size e2e

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

unit:
	cargo test --lib
	node --test tests/js/

size: build
	@scripts/check_size.sh

e2e: build
	@scripts/setup.sh --test-tools
	tests/e2e.sh

bench: setup build
	scripts/bench.sh
