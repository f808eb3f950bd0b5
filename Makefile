# Two entry points for a fresh machine (README): `make demo` and `make test`.
# Each creates .venv if needed and installs the project into it first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The project's install is not quiet: pip's progress shows through the minutes a first install takes.
# DeepSpeed compiles its shared-memory CPU all-reduce (C++, about 35 s on 2 cores) on its first
# tensor-parallel run in an environment; it is built here, once, rather than in the first run.
$(BIN)/gpo: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e '.[test]'
	DS_ACCELERATOR=cpu $(BIN)/python -c 'from deepspeed.comm.torch import build_shm_op; build_shm_op()'
	touch $@

.PHONY: demo test
demo: $(BIN)/gpo
	$(BIN)/gpo run configs/demo.yaml

test: $(BIN)/gpo
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow and not alone"
	$(BIN)/pytest -q -m "alone and not slow"
