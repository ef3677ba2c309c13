# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; set TORCH_SPEC to use another build (never let set-up pull the CUDA packages).
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,plot,hpo,index,cluster,track,parquet,rdf,serve]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m kgem.demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# Debian's chromium for the served page's browser test (Playwright drives it; it never downloads a browser)
$(VENV)/.browser: $(VENV)/.installed
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)
	touch $@

pytest: $(VENV)/.installed $(VENV)/.browser
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(VENV)/.installed
	$(PY) bench/data_load.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
