# The two commands a new user needs:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.nni-base-installed

.PHONY: install demo test lint bench fewshot clean

$(STAMP): pyproject.toml requirements.txt scripts/install.sh
	PYTHON=$(PYTHON) bash scripts/install.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python examples/quickstart.py --output-dir runs/quickstart

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check nni_base tests examples benchmarks search_spaces

fewshot: $(STAMP)
	$(VENV)/bin/python examples/fewshot.py --output-dir runs/fewshot

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run.py --output-dir benchmarks/results

clean:
	rm -rf runs .pytest_cache
