# isicstack: `make all` runs the pipeline end to end, `make test` runs the tests.
# Variables: DATA_DIR (auto = data/raw/isic-2024-challenge if present, else the synthetic set of
# PROFILE), ARTIFACTS (output folder), PROFILE (smoke | default | full), ARGS (extra key=value).
#
# ARGS reaches only the stage(s) named on the command line: `make train-tabular ARGS="bags=5"`
# passes bags=5 to `isic train-tabular`, never to the `folds` it depends on. To give a
# prerequisite (or a stage inside `make all`) its own overrides, use ARGS_<target>:
#   make stack ARGS_train-tabular="bags=1" ARGS="method=rank_mean"
# A stage recipe passes `$(STAGE_ARGS)`; a new stage only has to do the same.
#
# Prerequisites mirror what each stage reads. Cheap, idempotent stages (data, folds) are phony
# prerequisites; an expensive stage's output is a file prerequisite ($(TAB_OOF)) whose rule runs
# that stage only when the file is missing, so `make stack` after a clone trains what it needs
# and a second `make stack` does not retrain.

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
MLFLOW_PORT ?= 5000
NAME      ?= baseline
OUT       ?=
IMAGES    ?=
RUN       ?=
PYTEST_ARGS ?=
BENCH_ONLY ?=

BIN   := $(VENV)/bin
ISIC  := $(BIN)/isic
STAMP := $(VENV)/.installed
COMMON := data_dir=$(DATA_DIR) artifacts=$(ARTIFACTS)
TAB_NAME  ?= lgbm
TAB_OOF   := $(ARTIFACTS)/oof/$(TAB_NAME).parquet
IMG_OOF   := $(ARTIFACTS)/oof/vision_imgonly.parquet
PART_OOF  := $(ARTIFACTS)/oof/vision_fused_image_part.parquet
# The image runs of the chain: image-only, then fused: the image-only fold models (init_from)
# with the tabular logit term added, fine-tuned so the CNN fits what the table leaves
# unexplained (it also writes that image term alone, oof/vision_fused_image_part), then the
# GBDTs again with both image scores as features (outputs <model>_img beside the first pass).
# From the image-only weights the fused run needs a quarter of the steps of a random start
# (FUSED_STEPS_<profile>; the profile's own steps where unset): same stack pAUC, paired over
# fold seeds 0-2 (BENCHMARKS.md, `make all` in a quarter hour).
IMG_ONLY_ARGS := fusion=false name=imgonly
FUSED_STEPS_default := 60
FUSED_ARGS    := fusion=true name=fused tabular_name=$(TAB_NAME) init_from=vision_imgonly \
                 $(addprefix optim.steps=,$(FUSED_STEPS_$(PROFILE)))
SECOND_ARGS   := features.oof_names=[vision_imgonly,vision_fused_image_part] suffix=_img
# ARGS only for the goals the user named, plus ARGS_<target> (see the top of this file).
STAGE_ARGS = $(ARGS_$@) $(if $(filter $@,$(MAKECMDGOALS)),$(ARGS))
REAL_META := data/raw/isic-2024-challenge/train-metadata.csv
SYNTH_META := data/synthetic/$(PROFILE)/train-metadata.csv

# Stages that exist so far; `all` runs exactly these, in order.
PIPELINE := data folds train-tabular train-image-only train-image train-tabular-image stack \
            calibrate report

.PHONY: help setup synth data folds train-tabular train-image-only train-image \
        train-tabular-image predict-images stack submit report all test \
        test-fast bench bench-tables lint lock clean distclean tune-tabular tune-image tune-stack dashboard \
        evaluate compare kaggle-package app calibrate subgroups loco

ifneq ($(strip $(ARGS)),)
ifneq ($(filter all,$(MAKECMDGOALS)),)
$(error ARGS reaches only the stage named on the command line; with `make all` use ARGS_<stage>="..." (e.g. ARGS_train-tabular="bags=5"))
endif
endif

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: DATA_DIR=$(DATA_DIR) ARTIFACTS=$(ARTIFACTS) PROFILE=$(PROFILE) ARGS=$(ARGS)"

# Exact versions from requirements.lock (-c): CI and users install the same set.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project + every extra at the locked versions

lock: $(STAMP) ## rewrite requirements.lock from .venv after a dependency change (tools/lock.py)
	$(BIN)/python tools/lock.py

synth: $(STAMP) ## generate the synthetic data set of PROFILE into data/synthetic/PROFILE
	$(ISIC) synth --profile $(PROFILE) $(STAGE_ARGS)

data: $(STAMP) ## make sure data exists: real files, DATA_DIR, or synthetic (generated once)
	@if [ "$(DATA_DIR)" != "auto" ]; then \
	  test -f "$(DATA_DIR)/train-metadata.csv" || { echo "DATA_DIR=$(DATA_DIR) has no train-metadata.csv" >&2; exit 1; }; \
	elif [ -f "$(REAL_META)" ]; then echo "using real data in $(dir $(REAL_META))"; \
	elif [ -f "$(SYNTH_META)" ]; then echo "using synthetic data in $(dir $(SYNTH_META))"; \
	else $(ISIC) synth --profile $(PROFILE); fi

folds: data ## write ARTIFACTS/folds.parquet (patient-grouped stratified K folds)
	$(ISIC) folds --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

train-tabular: folds ## features + GBDT cross-validation -> ARTIFACTS/oof, ARTIFACTS/test
	$(ISIC) train-tabular --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

# The tabular OOF score that fusion, stacking and the report read: trained once when missing.
$(TAB_OOF):
	@echo "$@ not found: running train-tabular first"
	@$(MAKE) --no-print-directory train-tabular ARGS=

train-image-only: folds ## image-only CNN per fold on the HDF5 crops -> oof/vision_imgonly
	$(ISIC) train-image --profile $(PROFILE) $(COMMON) $(IMG_ONLY_ARGS) $(STAGE_ARGS)

# The image-only OOF score that the fused CNN and the second GBDT pass read.
$(IMG_OOF):
	@echo "$@ not found: running train-image-only first"
	@$(MAKE) --no-print-directory train-image-only ARGS=

train-image: folds $(TAB_OOF) $(IMG_OOF) ## CNN fused with the tabular OOF score, from the image-only models -> oof/vision_fused(_image_part)
	$(ISIC) train-image --profile $(PROFILE) $(COMMON) $(FUSED_ARGS) $(STAGE_ARGS)

# The fused run's image term alone, the second GBDT pass's other image feature.
$(PART_OOF):
	@echo "$@ not found: running train-image first"
	@$(MAKE) --no-print-directory train-image ARGS=

train-tabular-image: folds $(IMG_OOF) $(PART_OOF) ## GBDTs again, + both image scores as features -> oof/*_img
	$(ISIC) train-tabular --profile $(PROFILE) $(COMMON) $(SECOND_ARGS) $(STAGE_ARGS)

predict-images: $(STAMP) ## score crops with a saved image run: IMAGES=<hdf5|jpeg dir> [RUN= OUT=]
	$(ISIC) predict-images --profile $(PROFILE) artifacts=$(ARTIFACTS) images=$(IMAGES) \
	  $(if $(RUN),name=$(RUN)) $(if $(OUT),out=$(OUT)) $(STAGE_ARGS)

stack: folds $(TAB_OOF) ## level-2 stacker over OOF predictions + ARTIFACTS/submission.csv
	$(ISIC) stack --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

calibrate: folds $(TAB_OOF) ## calibrated risk per model (prior correction + out-of-fold map) -> ARTIFACTS/calibration
	$(ISIC) calibrate --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

subgroups: folds $(TAB_OOF) ## pAUC, AUC, sensitivity/specificity by site, sex, age, centre, diagnosis -> ARTIFACTS/subgroups
	$(ISIC) subgroups --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

loco: folds ## leave-one-centre-out CV of the tabular stage (ARGS="column=attribution") -> ARTIFACTS/loco
	$(ISIC) loco --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

report: folds $(TAB_OOF) ## CV table, ROC curves, score histograms of ARTIFACTS/oof -> ARTIFACTS/report
	$(ISIC) report --profile $(PROFILE) $(COMMON) $(STAGE_ARGS)

# submit and kaggle-package read saved models only: a missing one is an error naming the file
# and the stage to run (DATA_DIR is the test folder here, so nothing is trained implicitly).
submit: $(STAMP) ## offline inference on a test dir: make submit DATA_DIR=<dir> [OUT=submission.csv]
	$(ISIC) predict --profile $(PROFILE) $(COMMON) out=$(OUT) $(STAGE_ARGS)

kaggle-package: $(STAMP) ## dist/kaggle: wheel + saved models + run_inference.py (see KAGGLE.md)
	$(ISIC) kaggle-package --profile $(PROFILE) artifacts=$(ARTIFACTS) $(STAGE_ARGS)

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

# The run ledger (isicstack/tracking.py): the store ARTIFACTS' stages log to (ISIC_TRACKING,
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
	  --backend-store-uri "$$($(BIN)/python -c 'import sys; from isicstack.tracking import store_uri; \
	  print(store_uri(sys.argv[1]))' $(ARTIFACTS))"

evaluate: data ## repeated CV over fold seeds of the tabular config (NAME=run name)
	$(ISIC) evaluate --profile $(PROFILE) name=$(NAME) $(COMMON) $(STAGE_ARGS)

compare: $(STAMP) ## paired test of two evaluations or runs: make compare A=a B=b [ARGS="--model xgb"]
	$(ISIC) compare "$(A)" "$(B)" --artifacts $(ARTIFACTS) $(ARGS)

all: $(PIPELINE) ## the whole pipeline on DATA_DIR (synthetic default when no real data)

test: $(STAMP) ## run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## the test suite without slow tests
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

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
	rm -rf data/synthetic $(VENV)

# Other ISIC data (issue 11): a JPEG folder + label CSV -> OUT/images.hdf5, labels.csv, ingest.json.
.PHONY: ingest
ingest: $(STAMP) ## other ISIC data: make ingest IMAGES=<dir> LABELS=<csv> LAYOUT=isic2020 OUT=<dir>
	$(ISIC) ingest --images "$(IMAGES)" --labels "$(LABELS)" --layout $(or $(LAYOUT),generic) --out "$(OUT)" $(STAGE_ARGS)
