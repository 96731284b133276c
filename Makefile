# `make`       installs missing Debian packages and the portable toolchain,
#              builds the NIF for x86_64 and aarch64 (glibc 2.17), the Erlang
#              app, the test tool and the plugin tarball, and checks each .so.
# `make test`  also fetches Apache Kafka's jars (test/kafka/pom.xml) and the
#              Python packages (the schema test's, AWS's MSK IAM signer) if missing, then runs cargo test,
#              the .so check's own test, the rebuild-while-loaded test, the
#              schema test, xref, dialyzer and rebar3 ct.
# `make bench` runs the benchmark harness (see BENCHMARKS.md).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PROJECT_ROOT := $(CURDIR)

DEB_PACKAGES := erlang-nox erlang-dev erlang-common-test erlang-eunit erlang-dialyzer rebar3 cmake perl openssl python3-venv \
  openjdk-17-jre-headless maven
# Apache Kafka for the tests and the bench: the jars test/kafka/pom.xml
# names, with every dependency, in one classpath directory.
KAFKA_LIB := _build/kafka/lib
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' test/kafka/pom.xml)
# Portable builds (scripts/portable_cargo.sh): zig from PyPI drives
# cargo-zigbuild from crates.io, for both architectures the tarball carries.
ZIGENV := _build/zig
ZIG_VERSION := 0.17.1
CARGO_ZIGBUILD_VERSION := 0.24.1
RUST_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
# test/config_schema_test.py checks the Avro schema as EMQX's erlavro does.
PYENV := _build/pyenv
# AWS's MSK IAM signer, with every dependency pinned: the MSK IAM tokens
# are checked byte for byte against it (native/core/src/sign_in/msk_iam.rs).
PY_PACKAGES := fastavro==1.9.7 pyhocon==0.3.61 pyparsing==3.3.3 \
  aws-msk-iam-sasl-signer-python==1.0.2 boto3==1.44.18 botocore==1.44.18 s3transfer==0.19.3 \
  jmespath==1.1.0 python-dateutil==2.9.0.post0 six==1.17.0 urllib3==2.8.0 click==8.5.1

.PHONY: all deps toolchain build check tarball kafka pyenv test bench clean

all: build check tarball

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

toolchain:
	@$(ZIGENV)/bin/zig version 2>/dev/null | grep -qx $(ZIG_VERSION) || \
	  { python3 -m venv $(ZIGENV) && $(ZIGENV)/bin/pip install -q ziglang==$(ZIG_VERSION) && \
	    ln -sf "$$($(ZIGENV)/bin/python -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')/zig" $(ZIGENV)/bin/zig; }
	@cargo-zigbuild --version 2>/dev/null | grep -q $(CARGO_ZIGBUILD_VERSION) || \
	  cargo install cargo-zigbuild --version $(CARGO_ZIGBUILD_VERSION) --locked
	@for t in $(RUST_TARGETS); do \
	  rustup target list --installed | grep -qx $$t || rustup target add $$t; \
	done

# rebar3 compile runs scripts/build_nif.sh. The test tool is built the same
# portable way, so that one librdkafka build serves both.
build: deps toolchain
	rebar3 compile
	scripts/portable_cargo.sh x86_64 build -p kafka_tool

# Each .so must load on every EMQX host of its architecture (see the script).
check: build
	scripts/check_nif.sh

tarball: build
	./scripts/plugin_tarball.sh

kafka: deps
	@test -f $(KAFKA_LIB)/kafka_2.13-$(KAFKA_VERSION).jar || \
	  { rm -rf $(KAFKA_LIB) && mvn -B -q -f test/kafka/pom.xml -Dmaven.repo.local=$(CURDIR)/_build/kafka/m2 \
	      dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIB); }

pyenv:
	@$(PYENV)/bin/python -c 'import fastavro, pyhocon, aws_msk_iam_sasl_signer' 2>/dev/null || \
	  { python3 -m venv $(PYENV) && $(PYENV)/bin/pip install -q $(PY_PACKAGES); }

test: all kafka pyenv
	scripts/portable_cargo.sh x86_64 test -p kafka_bridge_core
	test/check_nif_test.sh
	test/build_nif_test.sh
	$(PYENV)/bin/python test/config_schema_test.py
	rebar3 xref
	rebar3 dialyzer
	rebar3 ct

bench: all kafka
	./bench/run.sh

clean:
	rm -rf _build target priv/x86_64 priv/aarch64
