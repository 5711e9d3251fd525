# llmrouter: `make run` sets up everything on a fresh machine and routes a sample request;
# `make test` checks types and layering (`make check`), then runs the whole test suite. Both are idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= smollm2-135m
STAMP  := $(VENV)/.installed

.PHONY: install model run check test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-llama.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	scripts/install-llama.sh $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -c "import llama_cpp, outlines, llmrouter; print('>> installed llmrouter with llama-cpp-python', llama_cpp.__version__)"
	touch $(STAMP)

model: install
	$(BIN)/llmrouter models pull $(MODEL)

run: model
	$(BIN)/llmrouter route "Write a Python function that reverses a list"

check: install
	$(BIN)/mypy
	$(BIN)/lint-imports

test: model check
	scripts/ensure-redis.sh  # the shared-state tests start a real redis-server
	scripts/ensure-chromium.sh  # the dashboard's browser test drives Debian's chromium
	$(BIN)/python -m pytest -q

bench: model
	$(BIN)/python bench/decision_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
