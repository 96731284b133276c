# `make`       installs missing Debian packages, builds the NIF, the Erlang
#              app, the test tool and the plugin tarball, and checks the .so.
# `make test`  also installs tansu and the schema test's Python packages if
#              missing, then runs cargo test, the schema test, xref, dialyzer
#              and rebar3 ct.
# `make bench` runs the benchmark harness (see BENCHMARKS.md).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PROJECT_ROOT := $(CURDIR)

DEB_PACKAGES := erlang-nox erlang-dev erlang-common-test erlang-eunit erlang-dialyzer rebar3 cmake perl stunnel4 openssl python3-venv
TANSU_VERSION := 0.6.0
NIF := priv/libkafka_bridge_nif.so
# test/config_schema_test.py checks the Avro schema as EMQX's erlavro does.
PYENV := _build/pyenv
PY_PACKAGES := fastavro==1.9.7 pyhocon==0.3.61 pyparsing==3.3.3

.PHONY: all deps build check tarball tansu pyenv test bench clean

all: build check tarball

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

build: deps
	rebar3 compile
	cargo build --release --locked -p kafka_tool

# The NIF must load inside EMQX's Docker image: glibc only, and never unloaded.
check: build
	@deps=$$(ldd $(NIF) | awk '{print $$1}' | grep -vE '^(linux-vdso|/lib64/ld-linux-x86-64|libc|libm|libgcc_s|libpthread|libdl|librt)\.so' || true); \
	if [ -n "$$deps" ]; then echo "unexpected shared libraries in $(NIF): $$deps"; exit 1; fi
	@readelf -d $(NIF) | grep -q NODELETE || { echo "$(NIF) lacks -z nodelete"; exit 1; }
	@echo "check: $(NIF) links only the C runtime and is marked NODELETE"

tarball: build
	./scripts/plugin_tarball.sh

tansu:
	@command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q $(TANSU_VERSION) || \
	  cargo install tansu --version $(TANSU_VERSION) --features dynostore,libsql --locked

pyenv:
	@$(PYENV)/bin/python -c 'import fastavro, pyhocon' 2>/dev/null || \
	  { python3 -m venv $(PYENV) && $(PYENV)/bin/pip install -q $(PY_PACKAGES); }

test: all tansu pyenv
	cargo test --release --locked -p kafka_bridge_nif
	$(PYENV)/bin/python test/config_schema_test.py
	rebar3 xref
	rebar3 dialyzer
	rebar3 ct

bench: all tansu
	./bench/run.sh

clean:
	rm -rf _build target $(NIF)
