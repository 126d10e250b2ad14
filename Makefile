# gasmon: `make local` runs the whole system here, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export PYENV_VERSION ?= 3.13.0
export SAM_CLI_TELEMETRY := 0
PYTHON ?= python3.13
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# Each bootstrap step runs again only when what it depends on changes.
STAMP  := $(VENV)/.installed
# checkov pins its own boto3 and friends, so it lives in a venv of its own.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt requirements-sdk.txt layers/gasmon/requirements.txt device/requirements.txt pyproject.toml device/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (pyenv install 3.13.0, or set PYTHON=)"; exit 1; }
	@test -x $(BIN)/python || { echo "make venv: creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "make venv: installing the pinned dependencies of the layer, the device agent and the tools"
	@echo "           (requirements-dev.txt; about a minute the first time, seconds after that)"
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -r requirements-dev.txt -e . -e device
	@$(BIN)/python -m pip install -q --no-deps -r requirements-sdk.txt
	@echo "make venv: ready ($(VENV)/bin has gasmon-local, gasmon-device, pytest, sam, cfn-lint)"
	@touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -r requirements-checkov.txt
	@touch $@

venv: $(STAMP) ## create the virtualenv (Python 3.13) with every dependency

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/gasmon/gasmon functions device/gasmon_device gasmon_local gasmon_admin

validate: $(STAMP) ## sam validate --lint and cfn-lint on template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region ap-northeast-2
	$(BIN)/cfn-lint template.yaml

# Suppressions live in each resource's Metadata (checkov: skip with a comment; cfn-lint:
# config.ignore_checks with `reasons`); tests/unit/test_ops_template.py insists on the reasons.
# BC_SKIP_MAPPING and --skip-download keep checkov off the network.
iac: $(STAMP) $(CHECKOV_STAMP) ## checkov and cfn-lint's serverless rules on template.yaml (0 findings)
	$(BIN)/cfn-lint -t template.yaml --append-rules cfn_lint_serverless.rules
	BC_SKIP_MAPPING=TRUE $(abspath $(CHECKOV_VENV))/bin/checkov -f template.yaml --framework cloudformation \
		--compact --quiet --skip-download

build: $(STAMP) ## sam build (arm64 wheels for the layer come from PyPI)
	$(BIN)/sam build --template template.yaml

# AWS: docs/deploy.md walks through these. CONFIG_ENV picks a samconfig.toml environment,
# STACK and REGION override its stack name and region, DRY_RUN=1 prints the sam commands only.
SAM_ARGS = --config-env "$(or $(CONFIG_ENV),default)" $(if $(STACK),--stack "$(STACK)") $(if $(REGION),--region "$(REGION)") $(if $(DRY_RUN),--dry-run) --sam $(BIN)/sam

deploy: $(STAMP) ## sam build, then sam deploy (--guided the first time; GUIDED=1 asks again; ARGS to sam deploy)
	$(BIN)/python -m gasmon_admin.sam deploy $(SAM_ARGS) $(if $(GUIDED),--guided) $(if $(ARGS),-- $(ARGS))

delete: $(STAMP) ## sam delete the stack, then name what it keeps (OpenSearch domain, archive, registry) and how to remove it
	$(BIN)/python -m gasmon_admin.sam delete $(SAM_ARGS)

logs: $(STAMP) ## tail one function's logs in AWS (FUNCTION=IngestFunction, a logical id of template.yaml)
	@$(BIN)/python -m gasmon_admin.sam logs $(SAM_ARGS) --function "$(FUNCTION)"

# Without LOCAL=1 the smoke test runs against STACK (default: samconfig.toml's stack, in its region).
smoke: $(STAMP) ## one reading end to end: POST, warning on MQTT, read back, clear (STACK=NAME, or LOCAL=1 [DATA_DIR=.local])
	@$(BIN)/python -m gasmon_admin.sam smoke $(SAM_ARGS) $(if $(LOCAL),--local --data-dir "$(or $(DATA_DIR),.local)") $(if $(ARGS),-- $(ARGS))

openapi: $(STAMP) ## write the API's OpenAPI spec to docs/openapi.json
	$(BIN)/python -m gasmon_local.openapi > docs/openapi.json

local: $(STAMP) ## the whole system on this machine, no AWS account, no Docker (ARGS="--no-devices --grace 5 ...")
	$(BIN)/gasmon-local $(ARGS)

invoke: $(STAMP) ## one function with one event, like sam local invoke (FUNCTION=IngestFunction EVENT=events/x.json [DATA_DIR=.local])
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=<LogicalId> EVENT=events/<file>.json"; exit 2; }
	$(BIN)/python -m gasmon_local.invoke $(FUNCTION) $(EVENT) --data-dir "$(or $(DATA_DIR),.local)"

unit: $(STAMP) ## unit tests only (fast)
	$(BIN)/pytest -q tests/unit device/tests

browser: ## install Debian's chromium for the dashboard's browser test (once; Playwright drives it)
	@test -x /usr/bin/chromium || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

screenshots: $(STAMP) browser ## rewrite docs/dashboard-desktop.png (1400x1000) and docs/dashboard-phone.png (390x844) from a local stack with demo data
	GASMON_UPDATE_SCREENSHOT=1 $(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_dashboard_local_stack.py
	@ls -l docs/dashboard-desktop.png docs/dashboard-phone.png

test: $(STAMP) browser ## every check: lint, template, sam build, unit, integration and end-to-end tests
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory validate
	$(MAKE) --no-print-directory iac
	$(MAKE) --no-print-directory build
	$(BIN)/pytest -q

bench: $(STAMP) ## benchmarks beside same-run baselines; a full run rewrites the README table (ARGS="cold ingest")
	$(BIN)/python -m bench --readme README.md $(ARGS)

clean: ## remove build output (keeps the virtualenv and .local data)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache

.PHONY: help venv lint validate iac build deploy delete logs smoke openapi local invoke unit browser screenshots test bench clean
