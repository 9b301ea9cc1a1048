# Two commands: `make run` (set up and run the whole stack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GEN := build/gen
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: install generate run test unit integration lint bench bench-quick clean

install: $(VENV)/.installed
generate: $(GEN)/.stamp

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Python stubs and the descriptor set Envoy transcodes with, into a git-ignored directory
# (protos/generate.sh, as the Dockerfile does); a .pth file puts them on the venv's import path.
$(GEN)/.stamp: $(PROTOS) protos/generate.sh $(VENV)/.installed
	PYTHON=$(PY) sh protos/generate.sh $(GEN)
	echo "$(abspath $(GEN))" > \
		$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/marquee-generated.pth
	touch $@

run: generate
	$(PY) -m devstack

lint: generate
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy services devstack gateway tests $(wildcard bench)

# The fast tier alone: pure logic and the use cases against in-memory repositories (seconds).
unit: generate
	$(PY) -m pytest tests/unit

integration: generate
	$(PY) -m pytest tests/integration

test: generate lint
	$(PY) -m pytest

bench: generate
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench --tiers full

bench-quick: generate
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench --tiers quick

clean:
	rm -rf build $(VENV)
