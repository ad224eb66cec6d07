# The two commands a new user needs:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.nni-base-installed

.PHONY: install demo test test-fast test-slow lint docs bench fewshot screenshot clean

$(STAMP): pyproject.toml requirements.txt scripts/install.sh
	PYTHON=$(PYTHON) bash scripts/install.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python examples/quickstart.py --output-dir runs/quickstart

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

# The fast lane: everything but the end-to-end runs (nnictl, demo, recipes, retraining, benchmarks, few-shot example).
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not e2e" tests

# Minutes-long repeats left out of `make test` (a second seed, few-shot BASE's known answer, the search-retrain smoke).
test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slow tests

# Lint and format check (ruff format is the house style; `ruff format` applies it).
lint: $(STAMP)
	$(VENV)/bin/ruff check nni_base tests examples benchmarks search_spaces scripts
	$(VENV)/bin/ruff format --check nni_base tests examples benchmarks search_spaces scripts

# The docs site into site/; warnings are errors (tests/docs/test_docs.py builds it the same way in CI).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/python -m mkdocs build --strict --site-dir site

fewshot: $(STAMP)
	$(VENV)/bin/python examples/fewshot.py --output-dir runs/fewshot

# The web-UI picture (docs/images/nni_webui.png): a two-trial nnictl experiment in a temporary folder, then headless Chromium.
screenshot: $(STAMP)
	$(VENV)/bin/python scripts/webui_screenshot.py --output docs/images/nni_webui.png

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run --output-dir benchmarks/results --figure docs/images/bench_results.png
	$(VENV)/bin/python -m benchmarks.search_retrain --output-dir benchmarks/results/search_retrain

clean:
	rm -rf runs site .pytest_cache
