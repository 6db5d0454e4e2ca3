# Two entry points for a new user: `make demo` (the main job) and `make test` (every test).
# Both install what they need into .venv and node/node_modules first.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ONNXGATE := $(VENV)/bin/onnxgate
STORE ?= ml/models
ARTIFACTS ?= ml/artifacts
PACKAGES ?= model_packages
PORT ?= 8000
VERSION ?= v1.0.0
export ONNXGATE_STORE := $(STORE)
export ONNXRUNTIME_NODE_INSTALL_CUDA := skip

.PHONY: install install-node install-browser demo demo-build export-examples serve test clean bench retrain-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 exactly in the export extra: any other spec pulls GBs of CUDA wheels.
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

node/node_modules/.installed: node/package.json node/package-lock.json
	cd node && npm ci --no-audit --no-fund
	touch $@

install: $(VENV)/.installed install-node install-browser

install-node: node/node_modules/.installed

# The dashboard's browser test (tests/ui/test_dashboard_browser.py) drives Debian's chromium through Playwright (never
# `playwright install`, which downloads its own browsers): installed here when missing and run as root with apt-get;
# otherwise that test skips, saying why.
install-browser:
	if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y --no-install-recommends chromium \
	    || { apt-get update && apt-get install -y --no-install-recommends chromium; }; \
	fi

# The main job: train the example models, export them to ONNX (with parity and Node checks), measure the classifier
# on its held-out rows, package and verify them, deploy to staging and, through the gates of ml/examples/policy.toml
# (approved by a reviewer), to production, then serve both environments from the embedded file store.
demo: demo-build serve

demo-build: install
	$(PY) -m ml.examples.train_all --out $(ARTIFACTS)
	$(MAKE) --no-print-directory export-examples
	$(ONNXGATE) evaluate cancer_classifier $(VERSION) --data $(ARTIFACTS)/cancer_classifier/holdout.csv \
	  --label diagnosis --actor demo --reason "demo: measured on the held-out rows"
	cp ml/examples/policy.toml $(STORE)/policy.toml
	$(ONNXGATE) policy
	for name in cancer_classifier intent_classifier diabetes_regressor; do \
	  $(ONNXGATE) package $$name $(VERSION) --out $(PACKAGES); \
	  $(ONNXGATE) verify $(PACKAGES)/$${name}_$(VERSION).tar.gz; \
	  $(ONNXGATE) deploy $$name $(VERSION) --env staging --actor demo --reason "demo: first deploy"; \
	  $(ONNXGATE) approve $$name $(VERSION) --env production --actor reviewer --reason "demo: reviewed in staging"; \
	  $(ONNXGATE) deploy $$name $(VERSION) --env production --actor demo --reason "demo: promoted from staging"; \
	done
	$(ONNXGATE) list
	$(ONNXGATE) status
	$(ONNXGATE) audit verify

# --force: re-running the demo replaces v1.0.0 with a freshly trained one. Pickle/joblib loading runs code: the
# artefacts here are the ones this Makefile just trained.
export-examples: install
	$(ONNXGATE) export $(ARTIFACTS)/cancer_classifier/cancer_classifier.joblib --name cancer_classifier \
	  --version $(VERSION) --metrics $(ARTIFACTS)/cancer_classifier/metrics.json --training-samples 426 \
	  --sample $(ARTIFACTS)/cancer_classifier/sample.npy --labels-file $(ARTIFACTS)/cancer_classifier/labels.txt \
	  --force --actor demo --reason "demo export"
	$(ONNXGATE) export $(ARTIFACTS)/diabetes_regressor/diabetes_regressor.joblib --name diabetes_regressor \
	  --version $(VERSION) --metrics $(ARTIFACTS)/diabetes_regressor/metrics.json --training-samples 331 \
	  --sample $(ARTIFACTS)/diabetes_regressor/sample.npy --force --actor demo --reason "demo export"
	$(ONNXGATE) export $(ARTIFACTS)/intent_classifier/intent_classifier.pt --name intent_classifier \
	  --version $(VERSION) --metrics $(ARTIFACTS)/intent_classifier/metrics.json \
	  --sample $(ARTIFACTS)/intent_classifier/sample.json --labels-file $(ARTIFACTS)/intent_classifier/labels.txt \
	  --tokenizer $(ARTIFACTS)/intent_classifier/tokenizer.json --force --actor demo --reason "demo export"

serve: install
	@echo "Gateway on http://127.0.0.1:$(PORT) (X-Environment: staging|production; default production). Ctrl-C stops it."
	@echo "  curl -s localhost:$(PORT)/predict/intent_classifier --json '{\"text\": [\"where is my order?\"]}'"
	$(ONNXGATE) serve --env production --env staging --port $(PORT)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest || [ $$? -eq 5 ]  # 5 = no tests collected: not a failure (CI judges the count)
	cd node && ONNXGATE_PYTHON=$(abspath $(PY)) npm test
	$(PY) -m pytest bench -q

# The retraining loop end to end in a store of its own (README "Retraining"): drifted traffic to a gateway with capture
# on, `retrain check` firing, a job that wins and goes to canary, and the gateway's judge promoting it.
retrain-demo: install
	$(PY) -m ml.examples.retrain_demo --out build/retrain-demo

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(ARTIFACTS) $(PACKAGES)/*.tar.gz build
	find $(STORE) -mindepth 1 -not -name .gitkeep -delete 2>/dev/null || true
