# svc2rules — developer entry points. `make demo` and `make test` are the README's quick start.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# System tools the tests drive for real (run as root they are installed when missing).
APT_PACKAGES := iptables nftables iproute2 conntrack ipset ipvsadm procps kmod qemu-system-x86 cpio xz-utils dnsmasq bind9 bind9-utils bind9-dnsutils
APT_TOOLS := iptables-restore nft ip conntrack ipset ipvsadm sysctl modprobe qemu-system-x86_64 cpio xz dnsmasq named named-checkzone dig

.PHONY: demo test lint typecheck unit golden bench bench-nft bench-latency bench-apply bench-userspace bench-ipvs system-deps clean

# Only the ruleset goes to stdout (`make demo > rules.v4`): the install, when it runs, says what
# it does on stderr.
demo:
	@$(MAKE) --no-print-directory $(STAMP) >&2
	@$(BIN)/svc2rules compile -f examples/cluster.yaml --node-name node1 --node-ip 192.168.0.2 --cluster-cidr 10.0.0.0/8

test: system-deps $(STAMP)
	$(BIN)/ruff check svc2rules tests bench
	$(BIN)/ruff format --check svc2rules tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check svc2rules tests bench
	$(BIN)/ruff format --check svc2rules tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not root and not vm"

# Regenerate every golden/<case>/expected.* from its input; review the diff before committing.
golden: $(STAMP)
	$(BIN)/python -m tests.golden.regen

# Benchmarks print figures; targets live there, never in timed tests. Most need root.
bench: $(STAMP)
	$(BIN)/python bench/compile_bench.py

bench-nft: $(STAMP)
	$(BIN)/python bench/nft_bench.py

bench-latency: $(STAMP)
	$(BIN)/python bench/latency_bench.py

bench-apply: $(STAMP)
	$(BIN)/python bench/apply_bench.py -S 1000 10000 30000

bench-userspace: $(STAMP)
	$(BIN)/python bench/userspace_bench.py --repeat 3

bench-ipvs: $(STAMP)
	$(BIN)/python bench/ipvs_vm_bench.py

system-deps:
	@missing=""; for t in $(APT_TOOLS); do command -v $$t >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages (missing:$$missing)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    if [ -z "$$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then apt-get update -qq; fi; \
	    apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null \
	      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; }; \
	  else \
	    echo "not root: missing$$missing; tests that need them will skip with a reason"; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
