# Two commands: `make run` (set up and run the whole stack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GEN := build/gen
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: install generate browser run test unit integration lint bench bench-quick load clean

install: $(VENV)/.installed
generate: $(GEN)/.stamp

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Python stubs, the descriptor set Envoy transcodes with, and the OpenAPI document and Swagger UI
# files Envoy serves, into a git-ignored directory (protos/generate.sh, as the Dockerfile does);
# a .pth file puts the stubs on the venv's import path.
$(GEN)/.stamp: $(PROTOS) protos/generate.sh gateway/openapi.py gateway/docs_site.py \
		$(VENV)/.installed
	PYTHON=$(PY) sh protos/generate.sh $(GEN)
	echo "$(abspath $(GEN))" > \
		$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/marquee-generated.pth
	touch $@

# Debian's Chromium, for the browser test of /docs (tests/integration/test_docs_browser.py):
# Playwright's own browser download is not reachable here. apt needs root; .ci/run runs this.
browser:
	@test -x /usr/bin/chromium || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

run: generate
	$(PY) -m devstack

lint: generate
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy services devstack gateway marquee_cli tests $(wildcard bench)

# The fast tier alone: pure logic and the use cases against in-memory repositories (seconds).
unit: generate
	$(PY) -m pytest tests/unit

integration: generate
	$(PY) -m pytest tests/integration

test: generate lint
	$(PY) -m pytest

# Schemathesis against a fresh test stack, every operation of /openapi.json, with many more
# examples than `make test` runs (tests/integration/test_fuzz.py; MARQUEE_FUZZ_SEED replays).
fuzz: generate
	MARQUEE_FUZZ_EXAMPLES=$${MARQUEE_FUZZ_EXAMPLES:-200} $(PY) -m pytest -p no:cacheprovider \
		tests/integration/test_fuzz.py

bench: generate
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench --tiers full

bench-quick: generate
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench --tiers quick

# Locust against a fresh local stack seeded with the TMDB top-10k, users rising in steps
# (bench/load.py; BENCHMARKS.md has the figures). E.g. make load LOAD_ARGS="--steps 10,40,80".
LOAD_ARGS ?=
load: generate
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench.load $(LOAD_ARGS)

clean:
	rm -rf build $(VENV)
