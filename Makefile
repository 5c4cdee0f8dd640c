# Every target installs what it needs first, so any of them works as the first command typed.
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
APPS := mnist forecast
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup test list bench clean $(addprefix train-,$(APPS))

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

$(addprefix train-,$(APPS)): train-%: $(INSTALLED)
	$(PYTHON) -m apps $* train $(ARGS)

list: $(INSTALLED)
	$(PYTHON) -m apps list

test: $(INSTALLED)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache
