# leadready — the front door. `make run` and `make test` set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
export LEADREADY_HOME ?= $(CURDIR)/var

.PHONY: install run test test-fast lint bench fuzz audit clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "uv==0.13.8"

# The project's packages, compiled to bytecode at install (see below).
SOURCES := leadready data model training serve review_ui bench

# Installs exactly the pinned set in requirements.lock, then the project itself.
# Everything is compiled to bytecode here: uv does not compile by default, and a
# machine running with PYTHONDONTWRITEBYTECODE=1 (CI) would otherwise compile
# ~5,000 modules on every command (6 s of a one-lead `leadready score`).
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.lock
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode --no-deps -e .
	rm -f $(VENV)/.compiled
	touch $@

# uv compiles only what it installs, so a venv made before this step (or one
# that only took an upgrade) is compiled whole once here.
$(VENV)/.compiled: $(VENV)/.installed
	$(BIN)/python -m compileall -q -j 0 \
	  "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null
	touch $@

# The project's own modules are compiled on every `make install` (a no-op when
# they are up to date): the editable install leaves them to Python otherwise.
install: $(VENV)/.installed $(VENV)/.compiled
	@$(BIN)/python -m compileall -q -j 0 $(SOURCES) >/dev/null

# Regenerate the lock after editing pyproject.toml dependencies.
lock: | $(BIN)/python
	$(UV) pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 -o requirements.lock

run: install
	$(BIN)/leadready demo

# The whole suite; the 25 slowest steps are printed so a test that grew slow shows in CI.
test: install
	$(BIN)/python -m pytest -n 2 -q --durations=25

# The inner loop (< 2 min on 2 cores): no `slow` (training, CLI end to end, servers,
# fuzzing), no `browser`, no `postgres` (store tests still run on SQLite).
test-fast: install
	$(BIN)/python -m pytest -n 2 -q -m "not slow and not browser and not postgres" --durations=10

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo --no-cache

# Issue #8's side-by-side set and #20's commands (~25 min on 2 cores); `python -m bench --all` adds the rest.
bench: install
	@command -v wrk >/dev/null || echo "note: wrk is not installed (apt-get install wrk); the serving benchmark falls back to a Python load generator, which takes CPU from the servers"
	$(BIN)/python -m bench

# Schema fuzzing of the API with many random examples (bench/results/fuzz.json).
fuzz: install
	$(BIN)/python -m bench.fuzz --examples $${FUZZ_EXAMPLES:-300} --timeout 3600

# Known vulnerabilities in the pinned set (pip-audit, PyPI's advisory data). Fails on
# a vulnerability with a fixed version to upgrade to, and when any package could not
# be audited (an unreachable advisory service must not read as "no vulnerabilities"),
# unless AUDIT_UNREACHABLE_OK=1 (then a warning).
AUDIT_JSON := $(VENV)/pip-audit.json
audit: install
	rm -f $(AUDIT_JSON)
	-$(BIN)/pip-audit -r requirements.lock --no-deps --disable-pip --progress-spinner off \
	  -f json -o $(AUDIT_JSON)
	$(BIN)/python -m leadready.audit $(AUDIT_JSON) $(if $(filter 1,$(AUDIT_UNREACHABLE_OK)),--allow-unaudited,)

clean:
	rm -rf $(VENV) var .pytest_cache
