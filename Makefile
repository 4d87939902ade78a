# Two commands do everything on a fresh machine with Python >= 3.10:
#   make demo   builds the demo cohort and runs the whole pipeline
#   make test   runs the test suite
# Both create (or reuse) .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On a machine without an NVIDIA GPU we install a CPU build of torch first, so that
# the project's "torch>=2.2" does not pull a multi-GB CUDA build. Set TORCH_CPU_INDEX to a
# CPU wheel index if your pip's default index only serves CUDA builds.
TORCH_CPU_SPEC ?= torch==2.13.0
TORCH_CPU_INDEX ?=

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing a GPU build of torch"; \
		$(PY) -m pip install "torch>=2.2"; \
	else \
		echo "No NVIDIA GPU: installing the CPU build $(TORCH_CPU_SPEC)"; \
		$(PY) -m pip install "$(TORCH_CPU_SPEC)" $(if $(TORCH_CPU_INDEX),--index-url $(TORCH_CPU_INDEX)); \
	fi
	$(PY) -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/brainvq demo --out runs/demo

# TESTS: what `make test` runs (default: the whole suite), on one pytest-xdist worker per core
# (at most TEST_WORKERS; each test file stays on one worker, so a module's trained fixture
# is trained once). TEST_WORKERS=0 runs the suite in this one process.
TESTS ?= tests
TEST_WORKERS ?= 4

test: install
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n auto --maxprocesses $(TEST_WORKERS) --dist loadfile) $(TESTS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks train.py predict.py

bench: install
	$(PY) benchmarks/bench_data.py

clean:
	rm -rf $(VENV) .pytest_cache
