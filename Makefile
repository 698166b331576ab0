# Valeria JupyterHub: every target installs what it is missing first, idempotently.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-stamp
NODE_DIR := local_platform/valeria_platform/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp
LABEXT_DIR := server_ext/labextension
LABEXT_OUT := server_ext/valeria_datalake/labextension
LABEXT_STAMP := $(LABEXT_DIR)/node_modules/.installed-stamp
LABEXT_BUILT := $(LABEXT_OUT)/package.json
LAB_SHARE := $(VENV)/share/jupyter
STATE ?= .state
# Debian packages the tests and the demo need: binary -> package.
SYSTEM_DEPS := radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd ceph-authtool:ceph-common chromium:chromium \
	/usr/lib/postgresql/15/bin/postgres:postgresql-15 node:nodejs npm:npm
PYTEST_ARGS ?=

.PHONY: help setup system-deps python-deps node-deps labextension labextension-test test test-fast lint demo bench bench-hub clean

help:
	@echo "make demo   - install what is missing, then run the whole platform on 127.0.0.1"
	@echo "make test   - install what is missing, then run every test (what CI runs)"
	@echo "make bench  - run the benchmarks under bench/ and print the table"
	@echo "make bench-hub USERS=N - N students log in and spawn at once (bench/HUB_RESULTS.md)"
	@echo "make lint   - ruff, yamllint, hadolint"
	@echo "make clean  - stop nothing, remove the demo state ($(STATE)) and build leftovers"

setup: system-deps python-deps node-deps labextension

system-deps:
	@missing=""; for pair in $(SYSTEM_DEPS); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x $$bin ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -e '.[hub,test]'
	@# an editable install skips data_files: enable the extension the way a wheel install does
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	cp server_ext/jupyter-config/jupyter_server_config.d/valeria_datalake.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	@# the local platform (local_platform/) is dev and test infrastructure, never in the wheel:
	@# the venv finds it through a .pth file, so tests, the demo and their subprocesses import it
	$(PY) -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "valeria_local_platform.pth").write_text(str(pathlib.Path("local_platform").resolve()) + "\n")'
	@touch $@

python-deps: $(STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(wildcard $(NODE_DIR)/package-lock.json)
	cd $(NODE_DIR) && (test -f package-lock.json && npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error)
	@touch $@

node-deps: $(NODE_STAMP)

# The JupyterLab extension (TypeScript, server_ext/labextension/): npm ci from the committed lock,
# then a prebuilt (federated) bundle into $(LABEXT_OUT), which the wheel ships under
# share/jupyter/labextensions/valeria-datalake. No Node.js is needed where the wheel is installed.
$(LABEXT_STAMP): $(LABEXT_DIR)/package.json $(LABEXT_DIR)/package-lock.json
	cd $(LABEXT_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(LABEXT_BUILT): $(LABEXT_STAMP) $(STAMP) $(wildcard $(LABEXT_DIR)/src/*.ts $(LABEXT_DIR)/style/* $(LABEXT_DIR)/schema/*) \
		server_ext/jupyter-config/lab-settings/valeria-datalake.json
	cd $(LABEXT_DIR) && PATH="$(abspath $(VENV))/bin:$$PATH" npm run build
	@# an editable install skips data_files: put the extension and the settings defaults where a wheel does
	mkdir -p $(LAB_SHARE)/labextensions $(LAB_SHARE)/lab/settings/overrides.d
	ln -sfn $(CURDIR)/$(LABEXT_OUT) $(LAB_SHARE)/labextensions/valeria-datalake
	cp server_ext/jupyter-config/lab-settings/valeria-datalake.json $(LAB_SHARE)/lab/settings/overrides.d/
	@touch $@

labextension: $(LABEXT_BUILT)

# Type check (strict), ESLint and the Jest unit tests of the extension's logic.
labextension-test: $(LABEXT_STAMP)
	cd $(LABEXT_DIR) && npm run lint && npm test -- --ci

test: setup labextension-test
	@mkdir -p test-artifacts
	PATH="$(CURDIR)/$(NODE_DIR)/node_modules/.bin:$$PATH" $(PY) -m pytest -ra $(PYTEST_ARGS)

# Everything but the browser tests, for a quick local loop.
test-fast: setup
	PATH="$(CURDIR)/$(NODE_DIR)/node_modules/.bin:$$PATH" $(PY) -m pytest -ra -m "not browser" $(PYTEST_ARGS)

lint: python-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s -c openshift/.yamllint openshift/
	@for f in $$(find images -name Dockerfile); do echo "hadolint $$f"; $(VENV)/bin/hadolint $$f || exit 1; done

demo: setup
	PATH="$(CURDIR)/$(NODE_DIR)/node_modules/.bin:$$PATH" $(PY) -m valeria_platform.demo --state $(STATE)

bench: setup
	$(PY) bench/run.py
	$(PY) bench/run.py --site ceph
	$(PY) bench/huge_folder.py

USERS ?= 50
LOGIN_USERS ?= 500
bench-hub: setup
	PATH="$(CURDIR)/$(NODE_DIR)/node_modules/.bin:$$PATH" $(PY) bench/hub_load.py --users $(USERS) --login-users $(LOGIN_USERS)

clean:
	rm -rf $(STATE) test-artifacts build dist *.egg-info bench/work
