# Speech emotion recognition from frozen pre-trained representations.
# Stages (each idempotent: a finished artefact is not rebuilt; an interrupted extraction resumes):
#   manifests -> extract (GPU) -> train-all (CPU or GPU)
# Every path and model below is a variable: `make extract IEMOCAP=/data/IEMOCAP_full_release DEVICE=cuda`.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
SHARED   ?= ../shared

# --- the paper's run on IEMOCAP ------------------------------------------------------------------------
IEMOCAP  ?= /data/IEMOCAP_full_release
WAV2VEC  ?= https://dl.fbaipublicfiles.com/fairseq/wav2vec/wav2vec_large.pt
BERT     ?= bert-base-uncased
CORPUS   ?= iemocap
DEVICE   ?= auto
CROP     ?= 5.0
WORKERS  ?= auto
SEEDS    ?= 0,1,2
MANIFESTS ?= manifests
STORES   ?= stores
RESULTS  ?= results

# --- the offline demo and the shared-corpus results ----------------------------------------------------
# The demo's corpus and encoders: ../shared when present, else downloads (sha256-pinned) cached in SER_CACHE
# by `make fetch-demo-data`: EmoDB from its own site, openai/whisper-base and all-MiniLM-L6-v2 from the hub.
SER_CACHE ?= $(HOME)/.cache/ser_toolkit
EMODB    ?= $(if $(wildcard $(SHARED)/data/emodb),$(SHARED)/data/emodb,$(SER_CACHE)/data/emodb)
RAVDESS  ?= $(SHARED)/data/ravdess
WHISPER  ?= $(if $(wildcard $(SHARED)/models/whisper-base-encoder),$(SHARED)/models/whisper-base-encoder,$(SER_CACHE)/models/whisper-base)
WHISPER_LAYER ?= 4
# The demo's Whisper window (ser-extract --whisper-window): native = each clip's own length, 16x faster than
# the 30 s padded window the shared results use (EmoDB layer 4: UA 91.6 instead of 94.6; README, Extraction).
DEMO_WINDOW ?= native
DEMO_WINDOW_TAG = $(if $(filter padded,$(DEMO_WINDOW)),,-$(if $(filter native,$(DEMO_WINDOW)),native,w$(subst .,p,$(DEMO_WINDOW))))
WHISPER_STORE = hf-$(notdir $(patsubst %/,%,$(WHISPER)))$(DEMO_WINDOW_TAG)-l$(WHISPER_LAYER)
DEMO_RESULTS ?= $(RESULTS)/demo
MINILM   ?= $(if $(wildcard $(SHARED)/models/minilm-l6-v2),$(SHARED)/models/minilm-l6-v2,$(SER_CACHE)/models/minilm-l6-v2)
AUDIO    ?=
K        ?= 125
SCHEDULE_OPTS ?= --also-converged
AL_SEEDS ?= 0,1,2
BENCH_N  ?= 500
DEMO_SEEDS ?= 0

# --- for labelling teams: a folder of audio -> predictions of a fitted model (`make predict`) ------------------
AUDIO_DIR ?=
MODEL    ?= model.pt
OUT      ?= predictions/$(notdir $(abspath $(AUDIO_DIR)))
LIKE_OPTS ?=

SER_MANIFEST := $(BIN)/ser-manifest
SER_EXTRACT  := $(BIN)/ser-extract
SER_TRAIN    := $(BIN)/ser-train

.PHONY: help install test manifests extract train-all demo shared-results predict bench clean-stores

help:
	@echo "make install      create $(VENV) and install the project with its extract and test extras"
	@echo "make test         run the test suite"
	@echo "make demo         end-to-end run on EmoDB (EMODB=$(EMODB)): manifest, extraction, training, report"
	@echo "make fetch-demo-data  the demo's inputs when ../shared is absent: EmoDB, Whisper-base, MiniLM (downloads"
	@echo "                  into SER_CACHE=$(SER_CACHE); present folders are used as they are)"
	@echo "make manifests    IEMOCAP manifest (IEMOCAP=$(IEMOCAP))"
	@echo "make extract      IEMOCAP feature stores: lld, wav2vec (WAV2VEC=...), bert (BERT=...) on DEVICE=$(DEVICE)"
	@echo "make train-all    every table and figure from the stores of CORPUS=$(CORPUS) into $(RESULTS)/$(CORPUS)"
	@echo "make shared-results  the README's EmoDB and RAVDESS tables (Whisper-base, LLDs, MiniLM from $(SHARED))"
	@echo "make predict      AUDIO_DIR=folder MODEL=model.pt [OUT=...]: folder -> manifest -> the model's features"
	@echo "                  (ser-extract --like) -> OUT/predictions.csv (OUT default: predictions/<folder name>)"
	@echo "make bench        extraction and training benchmarks"
	@echo "make label-studio-roundtrip  suggest -> Label Studio -> ser-manifest label-studio against a real Label"
	@echo "                  Studio on 127.0.0.1 (own venv LS_VENV=$(LS_VENV); installs label-studio on first use)"

# the set-up stage: every other target depends on it, so `make demo` or `make test` on a fresh clone installs first
INSTALLED := $(VENV)/.installed

install:
	rm -f $(INSTALLED)
	$(MAKE) $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e '.[extract,test]'
	touch $@

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

# ---- stage 1: manifests ---------------------------------------------------------------------------------
manifests: $(MANIFESTS)/iemocap.jsonl

$(MANIFESTS)/iemocap.jsonl: | $(INSTALLED)
	$(SER_MANIFEST) iemocap $(IEMOCAP) -o $@

$(MANIFESTS)/emodb.jsonl: | $(INSTALLED)
	$(SER_MANIFEST) emodb $(EMODB) -o $@

$(MANIFESTS)/ravdess.jsonl: | $(INSTALLED)
	$(SER_MANIFEST) ravdess $(RAVDESS) -o $@

# ---- stage 2: extraction (ser-extract skips complete stores and resumes partial ones) ---------------------
EXTRACT_OPTS = --device $(DEVICE) --crop $(CROP) --workers $(WORKERS)

extract: $(MANIFESTS)/iemocap.jsonl
	$(SER_EXTRACT) --manifest $< --out $(STORES)/iemocap $(EXTRACT_OPTS) \
	  --feature lld --feature wav2vec:$(WAV2VEC) --feature bert:$(BERT)
	touch $(STORES)/iemocap/.extract.done

$(STORES)/%/.shared-extract.done: $(MANIFESTS)/%.jsonl
	$(SER_EXTRACT) --manifest $< --out $(STORES)/$* $(EXTRACT_OPTS) \
	  --feature lld --feature hf:$(WHISPER)@all --feature bert:$(MINILM)
	touch $@

# ---- stage 3: training, tables and figures ---------------------------------------------------------------
train-all: | $(INSTALLED)
	@test -d $(STORES)/$(CORPUS) || { echo "no stores in $(STORES)/$(CORPUS): run 'make extract' (or 'make demo') first"; exit 1; }
	$(SER_TRAIN) tables --stores $(STORES)/$(CORPUS) --out $(RESULTS)/$(CORPUS) --seeds $(SEEDS) --device $(DEVICE) \
	  --k $(K) $(SCHEDULE_OPTS) $(if $(AUDIO),--audio $(AUDIO))

# The demo's inputs: each folder that exists is used as it is; a missing one is downloaded (resumable, verified
# against its sha256 pin, unpacked/renamed into place only when complete). Offline, it stops at once and says
# what to download, from where, and which variable (EMODB=… WHISPER=… MINILM=…) takes a local copy.
.PHONY: fetch-demo-data
fetch-demo-data: | $(INSTALLED)
	$(BIN)/python -m data_manifests.download emodb $(EMODB) --cache $(SER_CACHE)
	$(BIN)/python -m extract.hub_fetch whisper-base $(WHISPER)
	$(BIN)/python -m extract.hub_fetch minilm-l6-v2 $(MINILM)

# The demo: the paper's tables and figure on EmoDB in 6-9 minutes on 2 CPU cores (README): one Whisper layer on
# the native window (ser-extract skips complete stores, so a rerun goes straight to training), the paper's
# schedule only (`make demo DEMO_SCHEDULE_OPTS=--also-converged` adds the converged columns), one seed.
DEMO_SCHEDULE_OPTS ?=
demo: | $(INSTALLED)
	@t0=$$(date +%s); \
	  $(MAKE) fetch-demo-data && \
	  $(MAKE) $(MANIFESTS)/emodb.jsonl && \
	  $(SER_EXTRACT) --manifest $(MANIFESTS)/emodb.jsonl --out $(STORES)/emodb $(EXTRACT_OPTS) \
	    --whisper-window $(DEMO_WINDOW) --feature lld --feature hf:$(WHISPER)@$(WHISPER_LAYER) --feature bert:$(MINILM) && \
	  $(SER_TRAIN) tables --stores $(STORES)/emodb --audio $(WHISPER_STORE) --out $(DEMO_RESULTS)/emodb \
	    --seeds $(DEMO_SEEDS) --device $(DEVICE) --k $(K) $(DEMO_SCHEDULE_OPTS) && \
	  echo "demo done in $$(( $$(date +%s) - t0 )) s: see $(DEMO_RESULTS)/emodb/"

shared-results: $(STORES)/emodb/.shared-extract.done $(STORES)/ravdess/.shared-extract.done
	$(MAKE) train-all CORPUS=emodb AUDIO=hf-whisper-base-encoder-l$(WHISPER_LAYER) SEEDS=$(DEMO_SEEDS)
	$(MAKE) train-all CORPUS=ravdess SEEDS=$(DEMO_SEEDS) AUDIO=hf-whisper-base-encoder-l$(WHISPER_LAYER)
	$(SER_TRAIN) sweep --store '$(STORES)/emodb/hf-whisper-base-encoder-l*.h5' --out $(RESULTS)/emodb/layer_sweep \
	  --seeds $(AL_SEEDS) --also-converged
	$(SER_TRAIN) sweep --store '$(STORES)/ravdess/hf-whisper-base-encoder-l*.h5' --out $(RESULTS)/ravdess/layer_sweep \
	  --seeds $(AL_SEEDS) --also-converged
	$(SER_TRAIN) simulate --store $(STORES)/ravdess/hf-whisper-base-encoder-l$(WHISPER_LAYER).h5 \
	  --out $(RESULTS)/ravdess/active_learning --seeds $(AL_SEEDS) --balanced

# ---- for labelling teams: predict on a folder of unlabelled audio with a model from `ser-train fit` ----------
# Each step is idempotent: the manifest is replaced only when the folder's files changed (then the old pool's
# stores are removed), ser-extract --like reuses complete stores and resumes partial ones, and the predictions
# are recomputed from the stores (seconds). ser-extract prints the `ser-train predict` command (its `next:`
# line), which names the stores the model expects; it is run from there with this venv's ser-train.
# LIKE_OPTS is passed to ser-extract (e.g. LIKE_OPTS=--overwrite after switching to a model of other features).
predict: | $(INSTALLED)
	@test -n "$(AUDIO_DIR)" || { echo "usage: make predict AUDIO_DIR=folder/of/audio MODEL=model.pt [OUT=folder]"; exit 1; }
	@test -d "$(AUDIO_DIR)" || { echo "AUDIO_DIR=$(AUDIO_DIR): no such folder"; exit 1; }
	@test -f "$(MODEL)" || { echo "MODEL=$(MODEL): no such model bundle (make one with ser-train fit --store … --head … -o $(MODEL))"; exit 1; }
	@mkdir -p $(OUT)
	$(SER_MANIFEST) folder $(AUDIO_DIR) -o $(OUT)/.pool.new.jsonl
	@if cmp -s $(OUT)/.pool.new.jsonl $(OUT)/pool.jsonl; then rm -f $(OUT)/.pool.new.jsonl; else \
	  if [ -f $(OUT)/pool.jsonl ]; then echo "$(AUDIO_DIR) changed: removing the old pool's stores $(OUT)/stores"; rm -rf $(OUT)/stores; fi; \
	  mv $(OUT)/.pool.new.jsonl $(OUT)/pool.jsonl; fi
	$(SER_EXTRACT) --like $(MODEL) --manifest $(OUT)/pool.jsonl --out $(OUT)/stores --device $(DEVICE) \
	  --workers $(WORKERS) $(LIKE_OPTS) > $(OUT)/extract.txt || { cat $(OUT)/extract.txt; exit 1; }
	@cat $(OUT)/extract.txt
	@cmd="$$(sed -n 's|^next: ser-train |$(SER_TRAIN) |p' $(OUT)/extract.txt)"; \
	  test -n "$$cmd" || { echo "ser-extract printed no 'next: ser-train predict' line (see $(OUT)/extract.txt)"; exit 1; }; \
	  echo "$$cmd"; eval "$$cmd"
	@echo "predictions: $(OUT)/predictions.csv"

bench: | $(INSTALLED)
	$(BIN)/python benchmarks/bench_extract.py --workload iemocap-synth --feature lld --feature wav2vec:random-large \
	  --n $(BENCH_N) --naive-n 50 --device $(DEVICE)
	$(BIN)/python benchmarks/bench_train.py --device $(DEVICE)

clean-stores:
	rm -rf $(STORES)

# --- a real Label Studio round trip (not part of `make test`: it pip-installs label-studio, minutes) ------------
LS_VENV  ?= /tmp/ser-label-studio-venv
LS_OPTS  ?=
.PHONY: label-studio-roundtrip
label-studio-roundtrip: | $(INSTALLED)
	$(BIN)/python scripts/label_studio_roundtrip.py --venv $(LS_VENV) $(LS_OPTS)
