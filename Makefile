# The two commands of the README: `make suites` (the suites against the virtual lab, with the
# Allure report) and `make test` (the project's own tests).  Both set up what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST_DEBS := libdrm-dev mmdebstrap uidmap arch-test zstd cpio chromium
# The Allure report needs a Java runtime and npm (which brings Node.js): a command that is
# missing is installed from Debian (command -> package).
HOST_TOOLS := java:default-jre-headless npm:npm

.PHONY: setup build test suites bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	@missing=""; for p in $(HOST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	for t in $(HOST_TOOLS); do command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing host packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel "cython>=3,<4"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Rebuild the extensions whenever _ext/ changed (editable installs do not do it by themselves).
build: setup
	$(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m pytest tests

# The suites' exit status is kept, but the report is rendered whatever it is.
suites: build
	$(PY) -m pytest suites -n 2 --alluredir reports/allure-results --clean-alluredir; \
	rc=$$?; $(VENV)/bin/gpuhil report; exit $$rc

bench: build
	$(PY) -m bench

clean:
	rm -rf build $(VENV) gpuhil/*.so _ext/*.c
