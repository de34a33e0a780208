# Two commands do all set-up on a fresh machine:
#   make demo   - install, then run the whole loop on the embedded synthetic belt data
#   make test   - install, start the services the tests need, run the suite
# Re-running them reuses what is installed (stamp files keyed on the lock files).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
LS_VENV := .venv-labelstudio
LABEL_STUDIO_VERSION := 1.23.2
export OMP_WAIT_POLICY := PASSIVE
export FIFTYONE_DO_NOT_TRACK := true
export FIFTYONE_DATABASE_VALIDATION := false
PYTEST_ARGS ?=

.PHONY: demo test install system-deps labelstudio-venv lint clean docs

install: $(VENV)/.installed

$(VENV)/.installed: requirements/lock.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# pip (not uv): torch and torchvision come from this machine's local wheels
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements/lock.txt
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps -e .
	$(VENV)/bin/pip check
	touch $@

labelstudio-venv: $(LS_VENV)/.installed

# Label Studio pins Django and many libraries of its own: it gets its own virtualenv.
$(LS_VENV)/.installed: $(VENV)/.installed
	test -x $(LS_VENV)/bin/python || $(VENV)/bin/uv venv -q -p $(PYTHON) $(LS_VENV)
	VIRTUAL_ENV=$(LS_VENV) $(VENV)/bin/uv pip install -q label-studio==$(LABEL_STUDIO_VERSION)
	touch $@

# PostgreSQL (catalog tests) and Chromium (browser tests) from Debian packages.
system-deps:
	@scripts/system-deps.sh

demo: install labelstudio-venv
	$(VENV)/bin/python scripts/demo.py

# Label Studio boots in the background (its migrations take a minute the first time) while
# pytest starts; the labelstudio_server fixture waits for this server and reuses it.
test: system-deps install
	$(MAKE) labelstudio-venv
	scripts/labelstudio.sh start test-output/labelstudio-server --document-root $(CURDIR)/test-output --background
	status=0; $(VENV)/bin/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	scripts/labelstudio.sh stop test-output/labelstudio-server; exit $$status

docs: install
	$(VENV)/bin/python -m curation.clidoc --write README.md

clean:
	rm -rf .beltcurate demo test-output .pytest_cache
