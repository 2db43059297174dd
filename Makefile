# Set-up and entry points. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-fast demo bench bench-deps clean

# The venv sees system site-packages so that an existing torch stands; torch is pinned to the
# CPU wheel 2.13.0 only when none is importable (a bare `torch` would pull a CUDA build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(VENV)/bin/soundstorm demo

# soundstorm-pytorch, for the side-by-side decoding benchmark only; --no-deps keeps torch as is.
bench-deps: install
	$(PY) -m pip install --no-deps -r benchmarks/requirements-peers.txt

bench: bench-deps
	$(PY) benchmarks/decode_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
