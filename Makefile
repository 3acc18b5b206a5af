# isicstack: `make all` runs the pipeline end to end, `make test` runs the tests.
# Variables: DATA_DIR (auto = data/raw/isic-2024-challenge if present, else the synthetic set of
# PROFILE), ARTIFACTS (output folder), PROFILE (smoke | default | full), ARGS (extra key=value).

PYTHON    ?= python3.11
VENV      ?= .venv
DATA_DIR  ?= auto
ARTIFACTS ?= artifacts
PROFILE   ?= default
ARGS      ?=
MODEL     ?= lgbm
TRIALS    ?= 30
TIMEOUT   ?= 0
DASH_PORT ?= 8080
NAME      ?= baseline
OUT       ?=
PYTEST_ARGS ?=

BIN   := $(VENV)/bin
ISIC  := $(BIN)/isic
STAMP := $(VENV)/.installed
COMMON := data_dir=$(DATA_DIR) artifacts=$(ARTIFACTS)
REAL_META := data/raw/isic-2024-challenge/train-metadata.csv
SYNTH_META := data/synthetic/$(PROFILE)/train-metadata.csv

# Stages that exist so far; `all` runs exactly these, in order.
PIPELINE := data folds train-tabular train-image stack report

.PHONY: help setup synth data folds train-tabular train-image stack submit report all test \
        test-fast bench lint clean distclean tune-tabular tune-image tune-stack dashboard \
        evaluate compare kaggle-package

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: DATA_DIR=$(DATA_DIR) ARTIFACTS=$(ARTIFACTS) PROFILE=$(PROFILE) ARGS=$(ARGS)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project with dev extras (idempotent)

synth: $(STAMP) ## generate the synthetic data set of PROFILE into data/synthetic/PROFILE
	$(ISIC) synth --profile $(PROFILE) $(ARGS)

data: $(STAMP) ## make sure data exists: real files, DATA_DIR, or synthetic (generated once)
	@if [ "$(DATA_DIR)" != "auto" ]; then \
	  test -f "$(DATA_DIR)/train-metadata.csv" || { echo "DATA_DIR=$(DATA_DIR) has no train-metadata.csv" >&2; exit 1; }; \
	elif [ -f "$(REAL_META)" ]; then echo "using real data in $(dir $(REAL_META))"; \
	elif [ -f "$(SYNTH_META)" ]; then echo "using synthetic data in $(dir $(SYNTH_META))"; \
	else $(ISIC) synth --profile $(PROFILE); fi

folds: data ## write ARTIFACTS/folds.parquet (patient-grouped stratified K folds)
	$(ISIC) folds --profile $(PROFILE) $(COMMON) $(ARGS)

train-tabular: folds ## features + GBDT cross-validation -> ARTIFACTS/oof, ARTIFACTS/test
	$(ISIC) train-tabular --profile $(PROFILE) $(COMMON) $(ARGS)

train-image: folds ## CNN on HDF5 crops per fold (fused with the tabular OOF score)
	$(ISIC) train-image --profile $(PROFILE) $(COMMON) $(ARGS)

stack: $(STAMP) ## level-2 stacker over OOF predictions + ARTIFACTS/submission.csv
	$(ISIC) stack --profile $(PROFILE) $(COMMON) $(ARGS)

report: $(STAMP) ## CV table, ROC curves, score histograms of ARTIFACTS/oof -> ARTIFACTS/report
	$(ISIC) report --profile $(PROFILE) $(COMMON) $(ARGS)

submit: $(STAMP) ## offline inference on a test dir: make submit DATA_DIR=<dir> [OUT=submission.csv]
	$(ISIC) predict --profile $(PROFILE) $(COMMON) out=$(OUT) $(ARGS)

kaggle-package: $(STAMP) ## dist/kaggle: wheel + saved models + run_inference.py (see KAGGLE.md)
	$(ISIC) kaggle-package --profile $(PROFILE) artifacts=$(ARTIFACTS) $(ARGS)

tune-tabular: folds ## Optuna sweep of a tabular GBDT (MODEL=lgbm|xgb|cat TRIALS= TIMEOUT=)
	$(ISIC) tune tabular --profile $(PROFILE) model=$(MODEL) trials=$(TRIALS) timeout=$(TIMEOUT) $(COMMON) $(ARGS)

tune-image: folds ## Optuna sweep of the image stage (TRIALS= TIMEOUT=)
	$(ISIC) tune image --profile $(PROFILE) trials=$(TRIALS) timeout=$(TIMEOUT) $(COMMON) $(ARGS)

tune-stack: $(STAMP) ## Optuna sweep of the stacker (TRIALS= TIMEOUT=)
	$(ISIC) tune stack --profile $(PROFILE) trials=$(TRIALS) timeout=$(TIMEOUT) $(COMMON) $(ARGS)

dashboard: $(STAMP) ## optuna-dashboard on the study DB at 127.0.0.1:DASH_PORT
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port $(DASH_PORT) \
	  "$${OPTUNA_STORAGE:-sqlite:///$(abspath $(ARTIFACTS))/optuna.db}"

evaluate: folds ## repeated CV over fold seeds of the tabular config (NAME=run name)
	$(ISIC) evaluate --profile $(PROFILE) name=$(NAME) $(COMMON) $(ARGS)

compare: $(STAMP) ## paired pAUC difference of two evaluations: make compare A=name B=name
	$(ISIC) compare $(A) $(B) --artifacts $(ARTIFACTS)

all: $(PIPELINE) ## the whole pipeline on DATA_DIR (synthetic default when no real data)

test: $(STAMP) ## run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## the test suite without slow tests
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP) ## run the benchmarks (figures -> benchmarks/results/*.json)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

clean: ## remove ARTIFACTS
	rm -rf $(ARTIFACTS)

distclean: clean ## also remove generated synthetic data and the virtualenv
	rm -rf data/synthetic $(VENV)
