#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine with only Python, then run them.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
# Exactly the lock (uv.lock, hashes checked), then the project itself: nothing is resolved here.
bash scripts/install.sh
# The browser test drives Debian's Chromium (Playwright cannot download browsers here).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped" >&2
fi
# Where Chromium is installed, a browser test that cannot run fails instead of skipping
# (tests/conftest.py); SKIN_CANCER_REQUIRE_BROWSER=0 in the environment keeps the skip.
if command -v chromium >/dev/null 2>&1; then
  export SKIN_CANCER_REQUIRE_BROWSER="${SKIN_CANCER_REQUIRE_BROWSER:-1}"
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is a failure, not a pass.
if [ "$rc" = 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
