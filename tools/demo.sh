#!/usr/bin/env bash
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
#
# The main job, from a fresh Debian 12 machine: set-up (idempotent), a demo bag of real
# Fashion-MNIST test images as 640x480 rgb8 camera frames, and the classifier node on the
# embedded default model, fed over DDS on this host. Prints what came out.
# Extra arguments go to the demo, e.g. `bash tools/demo.sh --frames 300 --rate 30`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/tools/setup.sh"
cd "$repo"
# shellcheck disable=SC1091
source tools/env.sh
# Keep the demo's DDS traffic on this host and off the default domain of a robot nearby.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-77}
bag=build/demo/fashion_mnist_640x480
if [ ! -e "$bag" ]; then
  mkdir -p build/demo
  gfde-make-bag "$bag" --fashion-mnist --split test --count 200 --size 640x480 \
    --encoding rgb8 --storage mcap --quiet
fi
python -m gfde_perception.ros.demo --bag "$bag" --frames 200 --rate 15 "$@"
