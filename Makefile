# The two commands a newcomer needs: `make test` and `make demo`. Both set up what is
# missing themselves: a virtual environment, the Python packages, and the system tools
# (ffmpeg, dig, kdig, ...) through apt-get when run as root.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Debian packages the test suite drives as real clients and servers.
TEST_TOOLS := ffmpeg:ffmpeg ffprobe:ffmpeg curl:curl dig:dnsutils kdig:knot-dnsutils ip:iproute2 \
	strace:strace openssl:openssl sysctl:procps mount:mount umount:mount systemd-analyze:systemd \
	chromium:chromium pebble:pebble
# The web player's hls.js comes from the npm registry (package.json, package-lock.json) into
# node_modules/, which the control plane serves; it is never copied into the repository.
NODE_STAMP := node_modules/.installed-stamp
# Extra tools for `make bench` (the established servers we compare against, load generators).
BENCH_TOOLS := nginx:nginx-light wrk:wrk dnsperf:dnsperf gdnsd:gdnsd strace:strace taskset:util-linux

.PHONY: test demo install sysdeps bench-tools bench bench-table lint clean

test: install sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install sysdeps
	$(VENV)/bin/vcdn up $(DEMO_ARGS)

install: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "vcdn needs Python 3.11 or newer; '$(PYTHON)' is older. Run: make PYTHON=python3.11 ..."; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || \
		{ echo "Could not create a virtual environment. On Debian/Ubuntu: apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@TOOLS="npm:npm" sh .ci/sysdeps
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

sysdeps:
	@TOOLS="$(TEST_TOOLS) $(EXTRA_TOOLS)" sh .ci/sysdeps

bench-tools:
	@TOOLS="$(BENCH_TOOLS)" sh .ci/sysdeps

# Every benchmark writes bench/results/NAME.json + NAME.md; the README table is then
# regenerated from those files, even when one benchmark failed (its figures show why).
bench: install sysdeps bench-tools
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.run $(BENCH_ARGS); status=$$?; $(PY) -m bench.table && exit $$status

bench-table: install
	$(PY) -m bench.table

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis test-artifacts node_modules
