#!/usr/bin/env bash
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
#
# The whole test suite, from a fresh Debian 12 machine: set-up (idempotent), then pytest.
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k node -x`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/tools/setup.sh"
cd "$repo"
# shellcheck disable=SC1091
source tools/env.sh
export MPLBACKEND=Agg
# Each test is bounded; the whole suite stays well under 20 minutes on 2 cores.
python -m pytest -p no:cacheprovider --timeout=600 -ra "$@"
