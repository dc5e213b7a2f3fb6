# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
A real rate-limited link on one machine: a private network namespace with a shaped loopback.

Inside the namespace ``lo`` gets a lowered MTU (so every packet fits the token bucket's burst)
and a ``tc tbf`` qdisc at the requested rate; processes started through :meth:`ShapedLink.wrap`
talk over 127.0.0.1 there and nowhere else. The namespace is deleted when the context exits,
also on failure. Needs root and the ``ip`` and ``tc`` programs (iproute2).
"""

import itertools
import os
import shutil
import subprocess
from typing import Optional

from gfde_perception.errors import ConfigError

_COUNTER = itertools.count()


def link_unavailable() -> Optional[str]:
    """Why no shaped link can be made here (None when it can)."""
    if os.geteuid() != 0:
        return 'a network namespace needs root'
    for tool in ('ip', 'tc'):
        if shutil.which(tool) is None:
            return f'{tool} (iproute2) is not installed'
    return None


class ShapedLink:
    """
    ``with ShapedLink(5.0) as link: subprocess.run(link.wrap(['python', ...]))``.

    :param rate_mbit: link rate in Mbit/s (both directions share it: it shapes ``lo``).
    :param mtu: MTU of the namespace's loopback.
    :param queue_bytes: packets the shaper may hold before dropping; large enough for a whole
        camera frame, so a burst is delayed at the link rate rather than lost.
    """

    def __init__(self, rate_mbit: float, mtu: int = 1500, queue_bytes: int = 4 << 20):
        if not 0.01 <= rate_mbit <= 10000:
            raise ConfigError(f'rate must be in [0.01, 10000] Mbit/s, got {rate_mbit}')
        if not 576 <= mtu <= 9000:
            raise ConfigError(f'mtu must be in [576, 9000], got {mtu}')
        self.rate_mbit = float(rate_mbit)
        self.mtu = int(mtu)
        self.queue_bytes = int(queue_bytes)
        self.name = f'gfde_link_{os.getpid()}_{next(_COUNTER)}'
        self._made = False

    def _run(self, *argv):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def __enter__(self) -> 'ShapedLink':
        reason = link_unavailable()
        if reason:
            raise ConfigError(f'no shaped link: {reason}')
        self._run('ip', 'netns', 'add', self.name)
        self._made = True
        try:
            self._run('ip', 'netns', 'exec', self.name, 'ip', 'link', 'set', 'lo', 'mtu',
                      str(self.mtu), 'multicast', 'on', 'up')
            # DDS discovery multicasts: route it over the (only) interface, the loopback.
            self._run('ip', 'netns', 'exec', self.name, 'ip', 'route', 'add', '224.0.0.0/4',
                      'dev', 'lo')
            # The bucket must hold at least one packet and a few ms of traffic at this rate.
            burst = max(16 * 1024, int(self.rate_mbit * 1e6 / 8 / 250), 2 * self.mtu)
            self._run('ip', 'netns', 'exec', self.name, 'tc', 'qdisc', 'add', 'dev', 'lo',
                      'root', 'tbf', 'rate', f'{self.rate_mbit:g}mbit', 'burst', str(burst),
                      'limit', str(self.queue_bytes))
        except BaseException:
            self.close()
            raise
        return self

    def wrap(self, argv: list) -> list:
        """Return ``argv`` run inside the namespace."""
        return ['ip', 'netns', 'exec', self.name] + list(argv)

    def close(self):
        """Delete the namespace (idempotent; everything still inside loses its link)."""
        if self._made:
            subprocess.run(['ip', 'netns', 'del', self.name], capture_output=True, timeout=30,
                           check=False)
            self._made = False

    def __exit__(self, *exc):
        self.close()
        return False
