# isicstack: `make all` runs the pipeline end to end, `make test` runs the tests.
# Variables: DATA_DIR (auto = datasets/isic-2024-challenge if present, else the synthetic set of
# PROFILE), ARTIFACTS (output folder), PROFILE (smoke | default | full), ARGS (extra key=value).
#
# ARGS reaches only the stage(s) named on the command line: `make train-tabular ARGS="bags=5"`
# passes bags=5 to `isic train-tabular`, never to the `folds` it depends on. To give a
# prerequisite (or a stage inside `make all`) its own overrides, use ARGS_<target>:
#   make stack ARGS_train-tabular="bags=1" ARGS="method=rank_mean"
# A stage recipe passes `$(STAGE_ARGS)`; a new stage only has to do the same.
#
# The runs of `make all` (train-tabular ... report) are declared once, in configs/chain.yaml,
# and run by `isic chain <run>`: a run whose inputs (OOF files) are missing first runs the runs
# that provide them, so `make stack` after a clone trains what it needs and a second `make
# stack` does not retrain. Cheap, idempotent stages (data, folds) are phony prerequisites.

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
APP_PORT  ?= 7860
SERVE_PORT ?= 8000
BUNDLE    ?= dist/bundle
# what serve and space need first: the default bundle, built when missing (a folder or
# models:/ ref given as BUNDLE is used as it is)
BUNDLE_DEP = $(if $(filter dist/bundle,$(BUNDLE)),dist/bundle/bundle.json)
MLFLOW_PORT ?= 5000
NAME      ?= baseline
OUT       ?=
IMAGES    ?=
RUN       ?=
PYTEST_ARGS ?=
BENCH_ONLY ?=
VERSION   ?= 0
ALIAS     ?= champion
SOLO      ?= lgbm_solo

BIN   := $(VENV)/bin
ISIC  := $(BIN)/isic
STAMP := $(VENV)/.installed
COMMON := data_dir=$(DATA_DIR) artifacts=$(ARTIFACTS)
# The runs of `make all` are declared once, in configs/chain.yaml ($ISIC_CONFIG_DIR's when it
# has one): each is a target here that `isic chain` runs, first making any OOF file it needs
# that is missing (as file prerequisites did). The names and help lines are read from the
# file's `  <name>:  # <help>` lines; a run added there is a target here with nothing to edit.
CHAIN_FILE := $(firstword $(wildcard $(ISIC_CONFIG_DIR)/chain.yaml) configs/chain.yaml)
CHAIN := $(shell awk '/^runs:/ {r = 1; next} r && /^[^ \#]/ {r = 0} \
                      r && /^  [a-z][a-z0-9_-]*:/ {sub(/:.*/, "", $$1); print $$1}' $(CHAIN_FILE))
# every ARGS_<run> given, so a run made as a missing input gets its own overrides too
ifeq ($(strip $(CHAIN)),)
$(error no runs read from $(CHAIN_FILE): each run starts a line with two spaces, `  <name>:`)
endif
CHAIN_ARGS = --profile $(PROFILE) --data-dir $(DATA_DIR) --artifacts $(ARTIFACTS) \
             $(foreach r,$(CHAIN),$(if $(ARGS_$(r)),--args '$(r)=$(subst ','\'',$(ARGS_$(r)))'))
# The tabular scores that tuning, subgroups and friends read: made once when missing.
TAB_OOF := $(ARTIFACTS)/oof/lgbm.parquet
# ARGS only for the goals the user named, plus ARGS_<target> (see the top of this file).
STAGE_ARGS = $(ARGS_$@) $(if $(filter $@,$(MAKECMDGOALS)),$(ARGS))
# data sets live in datasets/ (git-ignored), outside the code; data/raw/ is the former place
REAL_META := $(firstword $(wildcard datasets/isic-2024-challenge/train-metadata.csv \
               data/raw/isic-2024-challenge/train-metadata.csv))
SYNTH_META := datasets/synthetic/$(PROFILE)/train-metadata.csv

# `all` runs exactly these, in order.
PIPELINE := data folds $(CHAIN)

.PHONY: help setup synth data folds predict-images submit all test \
        test-fast bench bench-tables lint lock clean distclean tune-tabular tune-image tune-stack dashboard \
        evaluate compare kaggle-package app subgroups loco serve bundle promote space replay

ifneq ($(strip $(ARGS)),)
ifneq ($(filter all,$(MAKECMDGOALS)),)
$(error ARGS reaches only the stage named on the command line; with `make all` use ARGS_<stage>="..." (e.g. ARGS_train-tabular="bags=5"))
endif
endif

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'
	@echo "  runs of make all ($(CHAIN_FILE)):"
	@awk '/^runs:/ {r = 1; next} r && /^[^ #]/ {r = 0} r && /^  [a-z][a-z0-9_-]*: *#/ \
	  {n = $$1; sub(/:.*/, "", n); sub(/^[^#]*# */, ""); printf "  \033[36m%-19s\033[0m %s\n", n, $$0}' $(CHAIN_FILE)
	@echo "  variables: DATA_DIR=$(DATA_DIR) ARTIFACTS=$(ARTIFACTS) PROFILE=$(PROFILE) ARGS=$(ARGS)"

# Exact versions from requirements.lock (-c): CI and users install the same set. -qq: pip >= 24
# prints the build backend's notes (setuptools' editable-install banner) even with -q; errors
# still print.
$(STAMP): pyproject.toml requirements.lock
	@echo "make setup: isicstack with every extra (PyTorch for CPU, LightGBM, XGBoost, CatBoost, MLflow, Gradio, FastAPI, test tools) at requirements.lock's versions into $(VENV): once, a few minutes (BENCHMARKS.md: make test)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project + every extra at the locked versions

lock: $(STAMP) ## rewrite requirements.lock from .venv after a dependency change (tools/lock.py)
	$(BIN)/python tools/lock.py

synth: $(STAMP) ## generate the synthetic data set of PROFILE into datasets/synthetic/PROFILE
	$(ISIC) synth --profile $(PROFILE) $(STAGE_ARGS)

data: $(STAMP) ## make sure data exists: real files, DATA_DIR, or synthetic (generated once)
	@if [ "$(DATA_DIR)" != "auto" ]; then \
	  test -f "$(DATA_DIR)/train-metadata.csv" || { echo "DATA_DIR=$(DATA_DIR) has no train-metadata.csv" >&2; exit 1; }; \
	elif [ -f "$(REAL_META)" ]; then echo "using real data in $(dir $(REAL_META))"; \
	elif [ -f "$(SYNTH_META)" ]; then echo "using synthetic data in $(dir $(SYNTH_META))"; \
	else $(ISIC) synth --profile $(PROFILE); fi

folds: data ## write ARTIFACTS/folds.parquet (patient-grouped stratified K folds)
	$(ISIC) folds --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

# A run of configs/chain.yaml (isic chain: its missing inputs first, then the run).
.PHONY: $(CHAIN)
$(CHAIN): folds
	$(ISIC) chain $@ $(CHAIN_ARGS) $(if $(filter $@,$(MAKECMDGOALS)),$(ARGS))

# An OOF file a target outside the chain reads: its chain provider runs when it is missing.
$(ARTIFACTS)/oof/%.parquet:
	$(ISIC) chain provide:$* $(CHAIN_ARGS)

predict-images: $(STAMP) ## score crops with a saved image run: IMAGES=<hdf5|jpeg dir> [RUN= OUT=]
	$(ISIC) predict-images --profile $(PROFILE) artifacts=$(ARTIFACTS) images=$(IMAGES) \
	  $(if $(RUN),name=$(RUN)) $(if $(OUT),out=$(OUT)) $(STAGE_ARGS)

subgroups: folds $(TAB_OOF) ## pAUC, AUC, sensitivity/specificity by site, sex, age, centre, diagnosis -> ARTIFACTS/subgroups
	$(ISIC) subgroups --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

loco: folds ## leave-one-centre-out CV of the tabular stage (ARGS="column=attribution") -> ARTIFACTS/loco
	$(ISIC) loco --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

# submit and kaggle-package read saved models only: a missing one is an error naming the file
# and the stage to run (DATA_DIR is the test folder here, so nothing is trained implicitly).
submit: $(STAMP) ## offline inference on a test dir: make submit DATA_DIR=<dir> [OUT=submission.csv]
	$(ISIC) predict --profile $(PROFILE) $(COMMON) out=$(OUT) $(STAGE_ARGS)

kaggle-package: $(STAMP) ## dist/kaggle: wheel + saved models + run_inference.py (see KAGGLE.md)
	$(ISIC) kaggle-package --profile $(PROFILE) artifacts=$(ARTIFACTS) $(STAGE_ARGS)

# The deployable model (serving/bundle.py): the runs `isic predict` reads + bundle.json +
# reference.json; the few-lesions run (SOLO, configs/chain.yaml) and its calibration map are made
# first when missing. Registered in the MLflow Model Registry of ARTIFACTS' store when MLflow is
# installed (register=auto); `make promote` then points an alias at a version.
bundle: folds ## dist/bundle: the versioned, deployable model (+ MLflow registry when installed)
	$(if $(SOLO),@test -f $(ARTIFACTS)/oof/$(SOLO).parquet || $(ISIC) chain provide:$(SOLO) $(CHAIN_ARGS))
	$(if $(SOLO),@test -f $(ARTIFACTS)/calibration/$(SOLO).json || $(ISIC) chain calibrate $(CHAIN_ARGS))
	$(ISIC) bundle --profile $(PROFILE) $(COMMON) solo=$(SOLO) register=auto $(STAGE_ARGS)

promote: $(STAMP) ## point an alias at a registered bundle: make promote VERSION=<n> [ALIAS=champion]
	$(ISIC) promote --profile $(PROFILE) artifacts=$(ARTIFACTS) version=$(VERSION) alias=$(ALIAS) $(STAGE_ARGS)

tune-tabular: folds ## Optuna sweep of a tabular GBDT (MODEL=lgbm|xgb|cat TRIALS= TIMEOUT=)
	$(ISIC) tune tabular --profile $(PROFILE) model=$(MODEL) trials=$(TRIALS) timeout=$(TIMEOUT) $(COMMON) $(STAGE_ARGS)

tune-image: folds $(TAB_OOF) ## Optuna sweep of the image stage (TRIALS= TIMEOUT=)
	$(ISIC) tune image --profile $(PROFILE) trials=$(TRIALS) timeout=$(TIMEOUT) $(COMMON) $(STAGE_ARGS)

tune-stack: folds $(TAB_OOF) ## Optuna sweep of the stacker (TRIALS= TIMEOUT=)
	$(ISIC) tune stack --profile $(PROFILE) trials=$(TRIALS) timeout=$(TIMEOUT) $(COMMON) $(STAGE_ARGS)

dashboard: $(STAMP) ## optuna-dashboard on the study DB at 127.0.0.1:DASH_PORT (extra: dashboard)
	@test -x $(BIN)/optuna-dashboard || { echo "make dashboard: optuna-dashboard is the optional \
	extra 'dashboard': $(BIN)/pip install -e '.[dashboard]' (make setup installs every extra)" >&2; exit 2; }
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port $(DASH_PORT) \
	  "$${OPTUNA_STORAGE:-sqlite:///$(abspath $(ARTIFACTS))/optuna.db}"

app: $(STAMP) ## the clinician web page (Gradio) at 127.0.0.1:APP_PORT over ARTIFACTS' saved models
	$(ISIC) app --profile $(PROFILE) artifacts=$(ARTIFACTS) port=$(APP_PORT) $(STAGE_ARGS)

# isic monitor over the prediction log `isic serve` writes (LOG=) against the served bundle's
# reference (BUNDLE=); exit 3 when a window has an alert (a scheduler's page).
LOG ?= $(ARTIFACTS)/serve/predictions.db
.PHONY: monitor
monitor: $(STAMP) ## drift, review rate and outcomes of the served model per window (LOG= BUNDLE= ARGS=)
	@test -f "$(LOG)" || { echo "make monitor: no prediction log at $(LOG): run \`make serve\` and send \
	it requests (\`make replay\` in another terminal sends a test stream), or set LOG=" >&2; exit 2; }
	$(ISIC) monitor log=$(LOG) bundle=$(BUNDLE) artifacts=$(ARTIFACTS) $(ARGS)

# The run ledger (isicstack/ledger/store.py): the store ARTIFACTS' stages log to (ISIC_TRACKING,
# MLFLOW_TRACKING_URI, else sqlite:///ARTIFACTS/mlflow.db); for a tracking server, open that one.
# Without MLflow's GenAI job runner (7 worker processes) and telemetry, unless set otherwise.
.PHONY: mlflow-ui
mlflow-ui: $(STAMP) ## MLflow UI over the tracked stage runs at 127.0.0.1:MLFLOW_PORT (extra: mlflow)
	@test -x $(BIN)/mlflow || { echo "make mlflow-ui: MLflow is the optional extra 'mlflow': \
	$(BIN)/pip install -e '.[mlflow]' (make setup installs every extra)" >&2; exit 2; }
	MLFLOW_DISABLE_TELEMETRY=$${MLFLOW_DISABLE_TELEMETRY:-true} \
	  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
	  $(BIN)/mlflow ui --host 127.0.0.1 \
	  --port $(MLFLOW_PORT) --workers 1 --default-artifact-root "$(abspath $(ARTIFACTS))/mlartifacts" \
	  --backend-store-uri "$$($(BIN)/python -c 'import sys; from isicstack.ledger.store import store_uri; \
	  print(store_uri(sys.argv[1]))' $(ARTIFACTS))"

evaluate: data ## repeated CV over fold seeds of the tabular config (NAME=run name)
	$(ISIC) evaluate --profile $(PROFILE) name=$(NAME) $(COMMON) $(STAGE_ARGS)

compare: $(STAMP) ## paired test of two evaluations or runs: make compare A=a B=b [ARGS="--model xgb"]
	$(ISIC) compare "$(A)" "$(B)" --artifacts $(ARTIFACTS) $(ARGS)

all: $(PIPELINE) ## the whole pipeline on DATA_DIR (synthetic default when no real data)

# pytest-xdist: one worker per core (at most 4), a test file's tests on one worker (they share its
# trained fixtures); tests/conftest.py gives each worker its share of the cores' threads
XDIST = -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile
TEST_WORKERS ?= auto

test: $(STAMP) ## run the test suite (TEST_WORKERS=0: in one process)
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,$(XDIST)) $(PYTEST_ARGS)

test-fast: $(STAMP) ## the test suite without slow tests
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,$(XDIST)) -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP) ## run the benchmarks (benchmarks/plan.py; BENCH_ONLY="tabular ..." for a part)
	$(BIN)/python benchmarks/plan.py $(if $(BENCH_ONLY),--only $(BENCH_ONLY))
	$(BIN)/python benchmarks/render.py

bench-tables: $(STAMP) ## regenerate BENCHMARKS.md's tables from benchmarks/results/*.json
	$(BIN)/python benchmarks/render.py

lint: $(STAMP) ## ruff + the import contract (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean: ## remove ARTIFACTS
	rm -rf $(ARTIFACTS)

distclean: clean ## also remove generated synthetic data and the virtualenv
	rm -rf datasets/synthetic $(VENV)

# Other ISIC data (issue 11): a JPEG folder + label CSV -> OUT/images.hdf5, labels.csv, ingest.json.
.PHONY: ingest
ingest: $(STAMP) ## other ISIC data: make ingest IMAGES=<dir> LABELS=<csv> LAYOUT=isic2020 OUT=<dir>
	$(ISIC) ingest --images "$(IMAGES)" --labels "$(LABELS)" --layout $(or $(LAYOUT),generic) --out "$(OUT)" $(STAGE_ARGS)

space: $(STAMP) $(BUNDLE_DEP) ## dist/space: the web page over BUNDLE as a Hugging Face Space (upload the folder)
	$(ISIC) space --profile $(PROFILE) bundle=$(BUNDLE) artifacts=$(ARTIFACTS) $(STAGE_ARGS)

# From a fresh clone `make serve` first runs the pipeline and builds dist/bundle (once); a
# bundle is a versioned artifact: after retraining, `make bundle` replaces it.
dist/bundle/bundle.json:
	$(MAKE) all
	$(MAKE) bundle

serve: $(STAMP) $(BUNDLE_DEP) ## the scoring API over a bundle on 127.0.0.1:$(SERVE_PORT) (OpenAPI page /docs; BUNDLE=)
	$(ISIC) serve --profile $(PROFILE) bundle=$(BUNDLE) port=$(SERVE_PORT) \
	  log=$(ARTIFACTS)/serve/predictions.db $(STAGE_ARGS)

replay: $(STAMP) ## a generated stream with planted shifts through the running `make serve` (SERVE_PORT, LOG); then `make monitor`
	$(ISIC) replay --profile $(PROFILE) url=http://127.0.0.1:$(SERVE_PORT) log=$(LOG) $(STAGE_ARGS)
