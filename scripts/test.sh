#!/usr/bin/env bash
# Set up (.venv + Debian chromium for the browser tests, postgresql for the store's) and run
# the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Debian chromium for the browser tests ..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "Installing Debian postgresql for the run store's tests (tests/pg.py) ..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null
fi
set +e
# two workers, each test file on one of them (its module fixtures built once): the suite waits
# on servers, browsers and worker processes more than it computes (OPTIM_TEST_WORKERS=0: one)
workers="${OPTIM_TEST_WORKERS:-2}"
if [ "$workers" = 0 ]; then
  .venv/bin/python -m pytest "$@"
else
  # a crashed worker ends the run and is named, rather than replaced (a replacement can hang)
  .venv/bin/python -m pytest -n "$workers" --dist loadfile --max-worker-restart 0 "$@"
fi
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$code"
