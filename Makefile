# Two entry points (see README): `make example` grades the bundled example submission,
# `make test` runs the grader's own tests. Both create the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: example test benchmark clean

$(STAMP): setup.cfg pyproject.toml requirements/pinned.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/pinned.txt
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	$(BIN)/python -m pip install -q .
	touch $(STAMP)

example: $(STAMP)
	$(BIN)/grade examples/submission.ipynb

test: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --force-reinstall .
	$(BIN)/python -m pytest tests

benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_grade.py

clean:
	rm -rf $(VENV) build *.egg-info
