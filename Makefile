# dockwarden — the two commands:  make run   (the demo, supervised)
#                                 make test  (the test suite, against a real engine)
# On a fresh Debian machine as root, both install what they need (apt) first.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON     ?= python3
VENV       ?= .venv
STATE_DIR  ?= ./state
INVENTORY  ?= examples/inventory
POLICY     ?= examples/policy.toml
RUN_ARGS   ?=
PYTEST_ARGS ?=
DIST       ?= dist

BIN := $(VENV)/bin

.PHONY: test-images help venv engine run test bench demo-up demo-down clean distclean image proxy-image wheel

help:
	@echo "make run        venv + engine + demo containers, then 'dockwarden run' in the foreground"
	@echo "make test       venv + engine, then pytest (PYTEST_ARGS='-k drift' to select)"
	@echo "make bench      run the benchmarks in bench/ (they print figures)"
	@echo "make venv       create $(VENV) and install dockwarden with its test extra"
	@echo "make engine     make sure a Docker engine runs and the test image exists"
	@echo "make demo-up    (re)create the demo containers; make demo-down removes them"
	@echo "make image      the container image dockwarden:latest and dockwarden:<version> (packaging/Dockerfile)"
	@echo "make proxy-image  the socket proxy image dockwarden-socket-proxy:latest (examples/compose)"
	@echo "make wheel      $(DIST)/dockwarden-<version>-py3-none-any.whl"
	@echo "make clean      remove $(STATE_DIR) and caches; make distclean also removes $(VENV)"
	@echo "Variables: STATE_DIR=$(STATE_DIR) INVENTORY=$(INVENTORY) POLICY=$(POLICY) RUN_ARGS=..."

# The virtualenv, rebuilt only when pyproject.toml changes (stamp file).
# Debian's system python3 may lack the venv module (package python3-venv):
# as root on Debian it is installed and the venv created again.
venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	@if [ ! -x "$(BIN)/pip" ]; then \
	    if ! $(PYTHON) -m venv "$(VENV)"; then \
	        if [ "$$(id -u)" -eq 0 ] && [ -f /etc/debian_version ]; then \
	            echo "venv: installing python3-venv" >&2; \
	            rm -rf "$(VENV)"; \
	            (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
	                apt-get install -y -qq python3-venv >/dev/null); \
	            $(PYTHON) -m venv "$(VENV)"; \
	        else \
	            echo "venv: '$(PYTHON) -m venv' failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2; \
	            exit 1; \
	        fi; \
	    fi; \
	fi
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

engine:
	bash scripts/ensure-docker.sh
	bash scripts/build-test-image.sh

demo-up: engine
	bash scripts/demo-up.sh

demo-down:
	bash scripts/demo-down.sh

# Foreground: events are printed as they happen; Ctrl-C stops dockwarden (the
# demo containers stay; `make demo-down` removes them).
run: venv engine
	bash scripts/demo-up.sh
	@echo
	@echo "dockwarden run: inventory $(INVENTORY), policy $(POLICY), state in $(STATE_DIR)"
	@echo "In another shell: $(BIN)/dockwarden status --state-dir $(STATE_DIR)   (see README: five-minute tour)"
	@echo
	$(BIN)/dockwarden run --inventory $(INVENTORY) --policy $(POLICY) --state-dir $(STATE_DIR) $(RUN_ARGS)

test: venv engine test-images
	$(BIN)/python -m pytest -v -ra --durations=25 $(PYTEST_ARGS)

# The Debian-based images some e2e tests need (real nginx/httpd with their own stop
# signals; the local bases of `make image` and of the socket proxy), built from
# debootstrap root filesystems cached under /var/cache/dockwarden-test. On a fresh
# machine the three debootstraps take ~3 min one after the other and ~2.3 min side
# by side, before the tests start (nothing else is running then); when they exist
# this takes a second. The tests' own fixtures build them too when they are missing.
test-images: engine
	@bash scripts/build-real-images.sh > /tmp/dockwarden-real-images.log 2>&1 & real=$$!; \
	bash scripts/build-base-image.sh python > /tmp/dockwarden-base-python.log 2>&1 & py=$$!; \
	bash scripts/build-base-image.sh haproxy > /tmp/dockwarden-base-haproxy.log 2>&1 & hap=$$!; \
	rc=0; for j in "$$real:real-images" "$$py:base-python" "$$hap:base-haproxy"; do \
		if ! wait "$${j%%:*}"; then rc=1; echo "test-images: $${j#*:} failed:"; tail -n 20 "/tmp/dockwarden-$${j#*:}.log"; fi; \
	done; exit $$rc

bench: venv engine
	@shopt -s nullglob; files=(bench/[!_]*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "bench: no bench/*.py yet"; exit 0; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(BIN)/python "$$f"; done

# The container image (scripts/build-image.sh): python:3.12-slim when the engine has
# it or can pull it, else a local Debian base made with debootstrap (no registry
# needed); dependencies from a wheelhouse downloaded on the host, so the build
# itself needs no network. Prints the image's size at the end.
image: engine
	bash scripts/build-image.sh

proxy-image: engine
	bash scripts/build-image.sh --proxy

# The wheel (everything: the dashboard's files, the example policy and inventory,
# the systemd unit under share/dockwarden).
wheel:
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	@ls -l $(DIST)/dockwarden-*.whl

clean:
	@case "$(STATE_DIR)" in ""|/|.|./|..|~|$$HOME) echo "clean: refusing to remove STATE_DIR=$(STATE_DIR)" >&2; exit 1;; esac
	rm -rf -- "$(STATE_DIR)" .pytest_cache .import_linter_cache build dist
	find src tests bench -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf -- "$(VENV)"
