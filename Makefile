# Everyday commands. The benchmarks compare pykv with a reference measured in
# the same run (see bench/results/*.md); this machine is shared, so read ratios.
PYTHON ?= python3

.PHONY: build test bench bench-gate bench-gate-quick bench-record bench-compare

build:  ## compile the C core in place (pykv/_native.abi3.so)
	$(PYTHON) setup.py build_ext --inplace -q

test:  ## what CI runs: install, quick bench gate, the test suite
	./scripts/test.sh

bench: build  ## every benchmark suite, figures printed beside their references
	$(PYTHON) -m pytest bench -s -q -p no:cacheprovider -o addopts=

bench-gate: build  ## the full regression gate against bench/baselines.json (several minutes)
	$(PYTHON) bench/gate.py

bench-gate-quick: build  ## the short gate CI runs (about a minute)
	$(PYTHON) bench/gate.py --quick

bench-record: build  ## re-measure both gates' baselines (review the diff before committing)
	$(PYTHON) bench/gate.py --quick --record
	$(PYTHON) bench/gate.py --record

bench-compare: build  ## pykv vs etcd 3.4 + etcdctl check perf -> bench/results/pykv-vs-etcd.md
	$(PYTHON) bench/compare_etcd.py
