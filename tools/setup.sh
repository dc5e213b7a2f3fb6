#!/usr/bin/env bash
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
#
# Idempotent set-up on Debian 12: system packages, a .venv with pinned torch and the ROS 2 Kilted
# wheels, the Export.cmake include-path fix, and a colcon build of gfde_msgs and gfde_perception.
# A second run only re-does what changed (stamp files in .venv/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
py=${PYTHON:-python3}
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
# pip warns about every local index folder that does not exist; keep real messages only.
pip_install() {
  "$vpy" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
}

# --- Debian packages --------------------------------------------------------------------------
need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v xmllint >/dev/null || need_apt+=(libxml2-utils)
"$py" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=''
  [ "$(id -u)" -eq 0 ] || sudo='sudo'
  log "apt-get install ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- Python virtual environment ---------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
reqs_hash=$(cat "$repo/tools/requirements.txt" "$repo/tools/ros-requirements.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.gfde-reqs" 2>/dev/null)" != "$reqs_hash" ]; then
  log 'installing torch==2.13.0 (CPU) first, then ROS 2 Kilted wheels and tools'
  # torch first and pinned: anything that later asks for torch is then already satisfied.
  pip_install 'torch==2.13.0'
  pip_install -r "$repo/tools/ros-requirements.txt" -r "$repo/tools/requirements.txt"
  echo "$reqs_hash" > "$venv/.gfde-reqs"
  rm -f "$venv/.gfde-cmake-fixed"
fi

# --- Export.cmake include paths ---------------------------------------------------------------
# The wheels were built under /opt/python/cp3XX-cp3XX; point their exported include directories
# at this venv's Python and numpy headers, or cmake refuses to configure gfde_msgs.
if [ ! -f "$venv/.gfde-cmake-fixed" ]; then
  py_inc=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$vpy" -c 'import numpy; print(numpy.get_include())')
  mapfile -t exports < <(grep -l '/opt/python/' "$venv"/share/*/cmake/*Export*.cmake 2>/dev/null || true)
  for f in "${exports[@]}"; do
    sed -i -E \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${np_inc}#g" \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#${py_inc}#g" "$f"
  done
  log "rewrote include paths in ${#exports[@]} Export.cmake files"
  touch "$venv/.gfde-cmake-fixed"
fi

# --- colcon build -----------------------------------------------------------------------------
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
src_hash=$(cd "$repo" && find package.xml setup.py setup.cfg gfde_msgs launch config resource \
  -type f \( -name '*.msg' -o -name '*.txt' -o -name '*.xml' -o -name '*.py' -o -name '*.yaml' \
  -o -name 'setup.*' -o -path 'resource/*' \) 2>/dev/null | sort | xargs cat | sha256sum | cut -c1-16)
if [ "$(cat "$repo/install/.gfde-src" 2>/dev/null)" != "$src_hash" ]; then
  mkdir -p "$repo/build"
  log 'colcon build (gfde_msgs, gfde_perception)'
  (cd "$repo" && "$venv/bin/colcon" --log-base build/log build --base-paths . gfde_msgs \
    --build-base build --install-base install --symlink-install \
    --event-handlers console_cohesion- status- \
    --cmake-args -DPython3_EXECUTABLE="$vpy" -DBUILD_TESTING=OFF >"$repo/build/colcon.log" 2>&1 \
    || { mkdir -p "$repo/build"; cat "$repo/build/colcon.log"; exit 1; })
  echo "$src_hash" > "$repo/install/.gfde-src"
fi
log 'ready: source tools/env.sh to use the workspace'
