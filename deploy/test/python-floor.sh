#!/usr/bin/env bash
# The oldest Python the project promises (pyproject.toml: requires-python >= 3.11), tested
# on Debian 12's own interpreter, 3.11.2, which is older than the 3.11.7 of the dev venv
# and older than 3.11.4 (whose dataclasses stopped calling inspect.signature at import).
#
#   deploy/test/python-floor.sh [PYTEST ARGS...]     # or `make test-python-floor`
#
# Makes a venv with that interpreter (apt's python3.11-venv, no recommends, when ensurepip
# is missing), installs the runtime dependencies and the test runner, and runs the engine
# tests, the server tests (the real app under uvicorn) and the route tests.
# PYTHON_FLOOR: the interpreter (default /usr/bin/python3.11); PYTHON_FLOOR_VENV: where
# the venv lives (default .venv-floor, reused while pyproject.toml is unchanged).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON_FLOOR:-/usr/bin/python3.11}
VENV=${PYTHON_FLOOR_VENV:-.venv-floor}
# apt-get needs root: sudo only for it, so the venv stays the caller's.
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)

apt_install() {
    echo "installing (no recommends): $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ! -x "$PY" ]; then
    apt_install python3.11 python3.11-venv
elif ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    apt_install python3.11-venv
fi
echo "Python floor: $("$PY" -VV | head -n 1)"

# Reinstall only when pyproject.toml changes (its checksum names the stamp).
STAMP=$VENV/.stamp-floor-$(cksum <pyproject.toml | cut -d' ' -f1)
if [ ! -e "$STAMP" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    # The runtime dependencies and the test extra's runner and property-test library, as
    # pyproject.toml lists them (not the project itself: tests import this checkout).
    "$VENV/bin/python" - >"$VENV/requirements.txt" <<'EOF'
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = ("pytest", "pytest-timeout", "hypothesis", "pyyaml")
test = [r for r in project["optional-dependencies"]["test"] if r.split(">")[0].split("<")[0].split("=")[0] in wanted]
# autodiff-client is this tree's client/ directory, not a registry package.
deps = ["./client" if r == "autodiff-client" else r for r in project["dependencies"]]
print("\n".join(deps + test))
EOF
    if ! "$VENV/bin/python" -m pip install -q -r "$VENV/requirements.txt" >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        exit 1
    fi
    touch "$STAMP"
fi

"$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/engine tests/app/api/test_server.py tests/app/api/test_routes.py "$@"
