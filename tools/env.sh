# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
# Source this file to use the workspace built by tools/setup.sh (bash or zsh).
_gfde_repo=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
# colcon's setup scripts read unset variables: allow that here, restore the caller's setting.
case $- in *u*) _gfde_nounset=1; set +u ;; *) _gfde_nounset= ;; esac
# shellcheck disable=SC1091
source "$_gfde_repo/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_gfde_repo/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_gfde_repo/.venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
if [ -f "$_gfde_repo/install/setup.bash" ] && [ -n "${BASH_VERSION:-}" ]; then
  # shellcheck disable=SC1091
  source "$_gfde_repo/install/setup.bash"
fi
# ament_python installs console scripts into lib/<package> (for `ros2 run`); put the gfde-* tools
# on PATH too.
export PATH="$_gfde_repo/install/gfde_perception/lib/gfde_perception:$PATH"
[ -n "$_gfde_nounset" ] && set -u
unset _gfde_repo _gfde_nounset
