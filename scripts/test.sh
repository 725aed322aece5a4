#!/usr/bin/env bash
# The README's test command: install everything the tests need, then run them.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/wal -x).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Real etcd and etcdctl (Debian's 3.4) for the compatibility and comparison tests.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq etcd-client etcd-server >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq etcd-client etcd-server >/dev/null; } \
      || echo "warning: could not install etcd-client/etcd-server; tests that need them will skip" >&2
  else
    echo "warning: not root: install etcd-client and etcd-server to run the etcdctl tests" >&2
  fi
fi

# The quick benchmark regression gate (about a minute) on full runs only;
# PYKV_SKIP_BENCH_GATE=1 leaves it out. make bench-gate runs the full one.
if [ $# -eq 0 ] && [ -z "${PYKV_SKIP_BENCH_GATE:-}" ]; then
  python3 bench/gate.py --quick
fi

exec python3 -m pytest "$@"
