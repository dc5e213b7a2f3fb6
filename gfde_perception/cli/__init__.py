# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Command-line tools of gfde_perception."""
