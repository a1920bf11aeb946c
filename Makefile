# Two entry points (see README): `make example` grades the bundled example submission,
# `make test` runs the grader's own tests. Both set up the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
PKG_STAMP := $(VENV)/.package-installed
PACKAGE_FILES := setup.cfg pyproject.toml $(shell find grader assignments reference student_template -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: example test test-fast benchmark docs clean

# Heavy, rarely changing: the venv, pinned torch, and the package's dependencies.
$(DEPS_STAMP): setup.cfg requirements/pinned.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/pinned.txt
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	rm -rf build
	$(BIN)/python -m pip install -q .
	touch $(DEPS_STAMP)

# The package itself (a real, non-editable install), again whenever its files change.
# (setuptools' in-tree build/ can resurrect deleted files into the wheel: start clean.)
$(PKG_STAMP): $(DEPS_STAMP) $(PACKAGE_FILES)
	rm -rf build
	$(BIN)/python -m pip install -q --no-deps --force-reinstall .
	touch $(PKG_STAMP)

# The example has three mistakes on purpose: exit status 1 (some checks failed) is success
# here; 2 (the notebook or the command could not be used) is not.
example: $(PKG_STAMP)
	$(BIN)/grade examples/submission.ipynb --html feedback.html || [ $$? -eq 1 ]

# The HTML feedback test renders its page in headless Chromium (Debian's `chromium`): install
# it when missing and we can (root, apt-get). Not fatal: without it that test skips, saying
# why (unless GRADER_REQUIRE_CHROMIUM=1, as in CI, makes it fail).
HAVE_CHROMIUM := command -v chromium || command -v chromium-browser || command -v google-chrome

# In-process unit tests of the engine's modules (load, harvest, wire, sandbox, import graph):
# under a minute. `make test` runs everything, end-to-end gradings included.
test-fast: $(PKG_STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

test: $(PKG_STAMP)
	@if ! { $(HAVE_CHROMIUM); } >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
	    && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium (for the HTML feedback test)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    >/dev/null 2>&1 || echo "could not install chromium: the HTML rendering test will skip"; \
	fi
	$(BIN)/python -m pytest tests

# The generated parts of docs/ (the CLI reference, the map of grader/'s rooms): tests/test_docs.py
# fails when they are stale.
docs: $(DEPS_STAMP)
	$(BIN)/python scripts/make_docs.py

benchmark: $(PKG_STAMP)
	$(BIN)/python benchmarks/bench_grade.py --all --write-readme
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) build *.egg-info
