# Sourced by scripts/install.sh and scripts/lock.sh: put a uv pinned by uv.lock on PATH, set up
# to reach the registry the way this machine's pip does.
#
# uv reads no pip configuration. Where pip is configured with a CA bundle (a TLS-intercepting
# proxy) or a primary index (a mirror), hand the same values to uv through its environment, so
# no host name is ever written into the repository. pip's extra and find-links locations are
# not passed: they are this machine's local caches, and a lock must name only the registry.
PY=${PYTHON:-python3}
TOOLS=.cache/uv-bootstrap

pip_setting() { "$PY" -m pip config get "$1" 2>/dev/null || true; }

if [ -z "${SSL_CERT_FILE:-}" ]; then
  cert=${PIP_CERT:-$(pip_setting global.cert)}
  if [ -n "$cert" ]; then export SSL_CERT_FILE=$cert; fi
fi
if [ -z "${UV_DEFAULT_INDEX:-}" ]; then
  index=${PIP_INDEX_URL:-$(pip_setting global.index-url)}
  if [ -n "$index" ]; then export UV_DEFAULT_INDEX=$index; fi
fi

# uv itself, at the version and with the hashes uv.lock pins (it is in the dev extra), in a
# tool venv of its own: nothing is resolved to bootstrap it.
if [ ! -x "$TOOLS/bin/uv" ] || ! "$PY" - "$TOOLS/bin/uv" <<'PYEOF'
import subprocess, sys, tomllib
want = next(p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv")
have = subprocess.run([sys.argv[1], "--version"], capture_output=True, text=True).stdout.split()[1]
sys.exit(have != want)
PYEOF
then
  rm -rf "$TOOLS"
  "$PY" -m venv "$TOOLS"
  "$PY" - > "$TOOLS/uv.txt" <<'PYEOF'
import tomllib
uv = next(p for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv")
hashes = " ".join(f"--hash={w['hash']}" for w in uv["wheels"])
print(f"uv=={uv['version']} {hashes}")
PYEOF
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --only-binary :all: \
    -r "$TOOLS/uv.txt"
fi
UV="$TOOLS/bin/uv"
export UV_PYTHON=${UV_PYTHON:-$("$PY" -c 'import sys; print(sys.executable)')}
