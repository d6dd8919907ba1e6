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

# Installs exactly the pinned set in requirements.lock, then the project itself.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(UV) pip install --python $(BIN)/python --quiet -r requirements.lock
	$(UV) pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Regenerate the lock after editing pyproject.toml dependencies.
lock: | $(BIN)/python
	$(UV) pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 -o requirements.lock

run: install
	$(BIN)/leadready demo

test: install
	$(BIN)/python -m pytest -n 2 -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Issue #8's side-by-side set (~15 min on 2 cores); `python -m bench --all` adds the rest.
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
