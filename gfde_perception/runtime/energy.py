# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Energy counters: NVML (NVIDIA GPUs), RAPL (x86 hosts) and INA3221 rails (Jetson).

Every source exposes one monotonic counter in joules (:meth:`EnergySource.energy_j`); the
:class:`EnergyMeter` turns two readings into the energy of a frame or a window above an idle
baseline. Where no counter exists the meter says so: its readings are ``measured=False`` with
NaN joules and a ``method`` that states why, never a number that could pass for a measurement.

Counters update at their own pace (RAPL about every millisecond, NVML every few tens of
milliseconds, INA3221 at the sampling rate here), so the energy of one fast frame is noisy and
can even fall below the baseline; averages over a window of frames (:meth:`EnergyMeter.window`)
are the figures to report.
"""

import glob
import logging
import math
import os
import threading
import time
from typing import Optional, Sequence

from gfde_perception.errors import BackendError, ConfigError
from gfde_perception.runtime.result import EnergyReading

LOG = logging.getLogger(__name__)

RAPL_ROOT = '/sys/class/powercap'
I2C_DRIVERS_ROOT = '/sys/bus/i2c/drivers'
# Rails that already carry the whole module's input power on Jetson boards (Nano, TX2, Xavier,
# Orin): when one is present it is used alone, because the other rails are parts of it.
JETSON_TOTAL_RAILS = ('VDD_IN', 'POM_5V_IN', 'VIN_SYS_5V0', 'VDD_IN_TOTAL')
NO_COUNTER_METHOD = 'no energy counter on this host (no NVML, RAPL or INA3221); no estimate made'


class EnergySourceUnavailable(BackendError):
    """An energy counter does not exist or cannot be read on this host."""


class EnergySource:
    """A cumulative energy counter in joules."""

    name = 'none'

    def energy_j(self) -> float:
        """Return the energy counted since the source was opened, in joules."""
        raise NotImplementedError

    def close(self):
        """Release the counter."""


class NvmlSource(EnergySource):
    """NVML total-energy counter of one NVIDIA GPU (Volta and newer), in millijoules."""

    name = 'nvml'

    def __init__(self, device_index: int = 0):
        try:
            import pynvml  # noqa: PLC0415 - optional, only on NVIDIA hosts
        except ImportError as exc:
            raise EnergySourceUnavailable(f'pynvml is not installed ({exc})') from exc
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # pynvml raises its own NVMLError family
            raise EnergySourceUnavailable(f'NVML cannot initialise: {exc}') from exc
        self._nvml = pynvml
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._start_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as exc:
            pynvml.nvmlShutdown()
            raise EnergySourceUnavailable(
                f'GPU {device_index} has no NVML total-energy counter: {exc}') from exc

    def energy_j(self) -> float:
        mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        return (mj - self._start_mj) / 1000.0

    def close(self):
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # closing twice or after a driver reset is harmless
            pass


class RaplSource(EnergySource):
    """
    RAPL package counters from powercap sysfs (``intel-rapl:N/energy_uj``), with wrap-around.

    Only top-level package domains are summed (``intel-rapl:0``, ``intel-rapl:1``...): the
    sub-zones (``intel-rapl:0:0`` core, uncore, dram) are parts of their package and would be
    counted twice. A counter wraps at ``max_energy_range_uj``; a wrap is detected as a decrease,
    so the counter must be read at least once per wrap period (tens of seconds at full load):
    the :class:`EnergyMeter` polls it in the background for that reason.
    """

    name = 'rapl'
    needs_polling = True

    def __init__(self, root: str = RAPL_ROOT):
        zones = sorted(p for p in glob.glob(os.path.join(root, 'intel-rapl:*'))
                       if os.path.basename(p).count(':') == 1)
        if not zones:
            raise EnergySourceUnavailable(f'no RAPL package zones under {root}')
        self._zones = []
        for zone in zones:
            path = os.path.join(zone, 'energy_uj')
            try:
                raw = _read_int(path)
                span = _read_int(os.path.join(zone, 'max_energy_range_uj'))
            except (OSError, ValueError) as exc:
                # Recent kernels make energy_uj root-only (a side channel); say so.
                raise EnergySourceUnavailable(f'cannot read RAPL counter {path}: {exc}') from exc
            self._zones.append([path, span, raw])
        self._total_uj = 0
        self._lock = threading.Lock()

    @property
    def zones(self) -> tuple:
        """Return the energy_uj files summed."""
        return tuple(z[0] for z in self._zones)

    def energy_j(self) -> float:
        with self._lock:
            for zone in self._zones:
                path, span, last = zone
                raw = _read_int(path)
                delta = raw - last
                if delta < 0:
                    # The counter passed max_energy_range_uj and restarted from zero.
                    delta += span + 1
                self._total_uj += delta
                zone[2] = raw
            return self._total_uj / 1e6


class Ina3221Source(EnergySource):
    """
    Jetson INA3221 power monitors, integrated in time by a sampling thread.

    Finds rails in both sysfs layouts: the legacy IIO one
    (``ina3221x/*/iio:device*/in_power<N>_input`` in mW with ``rail_name_<N>``) and the hwmon one
    (``ina3221/*/hwmon/hwmon*/in<N>_input`` mV times ``curr<N>_input`` mA, with ``in<N>_label``).
    A total-input rail (``VDD_IN`` and the like) is used alone when present; otherwise all rails
    are summed. ``rails`` selects rails by name instead.
    """

    name = 'ina3221'
    FAILURE_WINDOW_S = 1.0

    def __init__(self, root: str = I2C_DRIVERS_ROOT, rails: Optional[Sequence[str]] = None,
                 sample_hz: float = 200.0):
        if not 1.0 <= sample_hz <= 10000.0:
            raise ConfigError(f'sample_hz must be in [1, 10000], got {sample_hz}')
        found = _find_ina3221_rails(root)
        if not found:
            raise EnergySourceUnavailable(f'no INA3221 rails under {root}/ina3221*')
        if rails:
            chosen = {n: r for n, r in found.items() if n in set(rails)}
            missing = sorted(set(rails) - set(chosen))
            if missing:
                raise EnergySourceUnavailable(
                    f'INA3221 rails {missing} not found; present: {sorted(found)}')
        else:
            total = [n for n in JETSON_TOTAL_RAILS if n in found]
            chosen = {total[0]: found[total[0]]} if total else found
        self._rails = chosen
        self._period = 1.0 / sample_hz
        self._lock = threading.Lock()
        self._last_t = time.monotonic()
        self._last_w = self.power_w()
        self._energy = 0.0
        self._failure = ''
        self.read_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name='gfde-ina3221',
                                        daemon=True)
        self._thread.start()

    @property
    def rails(self) -> tuple:
        """Names of the rails summed."""
        return tuple(sorted(self._rails))

    def power_w(self) -> float:
        """Return the instantaneous power of the chosen rails in watts."""
        total_mw = 0.0
        for reader in self._rails.values():
            total_mw += reader()
        return total_mw / 1000.0

    def _sample(self):
        watts = self.power_w()
        now = time.monotonic()
        with self._lock:
            # Trapezoid between consecutive samples.
            self._energy += 0.5 * (watts + self._last_w) * (now - self._last_t)
            self._last_t, self._last_w = now, watts

    def _sample_loop(self):
        failing_since = None
        while not self._stop.wait(self._period):
            try:
                self._sample()
            except (OSError, ValueError) as exc:
                # A sysfs read can fail once (an I2C hiccup, a file caught mid-update): the
                # sample is skipped and the last power carries the integral on. Only a rail that
                # stays unreadable for FAILURE_WINDOW_S stops the counter, and says so.
                now = time.monotonic()
                self.read_errors += 1
                if failing_since is None:
                    failing_since = now
                    LOG.warning('INA3221 read failed (%s); keeping the last power', exc)
                elif now - failing_since >= self.FAILURE_WINDOW_S:
                    self._failure = (f'INA3221 rails unreadable for '
                                     f'{now - failing_since:.1f} s: {exc}')
                    LOG.error('INA3221 sampling stopped: %s', self._failure)
                    return
            else:
                failing_since = None

    def energy_j(self) -> float:
        if self._failure:
            raise EnergySourceUnavailable(self._failure)
        with self._lock:
            # Extend the integral to now with the last power, so reads between samples are exact
            # for constant power and never go backwards.
            return self._energy + self._last_w * (time.monotonic() - self._last_t)

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)


def _read_int(path: str) -> int:
    with open(path, 'r', encoding='ascii') as f:
        return int(f.read().strip())


def _read_text(path: str) -> str:
    with open(path, 'r', encoding='ascii', errors='replace') as f:
        return f.read().strip()


def _find_ina3221_rails(root: str) -> dict:
    """Map rail name -> callable returning milliwatts, over both sysfs layouts."""
    rails = {}
    # Legacy layout (JetPack <= 4): power already in mW.
    for power in sorted(glob.glob(os.path.join(root, 'ina3221*', '*', 'iio:device*',
                                               'in_power*_input'))):
        index = os.path.basename(power)[len('in_power'):-len('_input')]
        name_file = os.path.join(os.path.dirname(power), f'rail_name_{index}')
        name = _read_text(name_file) if os.path.exists(name_file) else f'rail{index}'
        rails[_unique(rails, name)] = (lambda p=power: float(_read_int(p)))
    # hwmon layout (JetPack >= 5): volts (mV) times amps (mA) per channel.
    for volts in sorted(glob.glob(os.path.join(root, 'ina3221*', '*', 'hwmon', 'hwmon*',
                                               'in*_input'))):
        index = os.path.basename(volts)[len('in'):-len('_input')]
        amps = os.path.join(os.path.dirname(volts), f'curr{index}_input')
        if not os.path.exists(amps):
            continue  # channels 4-7 are the sum/shunt voltages, without a current
        label_file = os.path.join(os.path.dirname(volts), f'in{index}_label')
        name = _read_text(label_file) if os.path.exists(label_file) else f'in{index}'
        if name.upper().startswith('NC'):
            continue  # unconnected channel
        rails[_unique(rails, name)] = (
            lambda v=volts, a=amps: _read_int(v) * _read_int(a) / 1000.0)
    return rails


def _unique(existing: dict, name: str) -> str:
    candidate, n = name, 1
    while candidate in existing:
        n += 1
        candidate = f'{name}#{n}'
    return candidate


def open_energy_source(kind: str = 'auto') -> tuple:
    """
    Open the energy counter ``kind`` ('auto' tries NVML, RAPL, INA3221 in that order).

    :returns: (source or None, reason): the reason says which source was chosen, or why none was.

    :raises EnergySourceUnavailable: a specific ``kind`` was asked for and is not there.

    """
    openers = {'nvml': NvmlSource, 'rapl': RaplSource, 'ina3221': Ina3221Source}
    if kind == 'none':
        return None, 'energy metering disabled by configuration; no estimate made'
    if kind != 'auto':
        if kind not in openers:
            raise ConfigError(f'unknown energy source {kind!r}')
        return openers[kind](), f'{kind} (forced by configuration)'
    failures = []
    for name, opener in openers.items():
        try:
            return opener(), f'{name} (first counter found)'
        except EnergySourceUnavailable as exc:
            failures.append(f'{name}: {exc}')
    return None, NO_COUNTER_METHOD + ' [' + '; '.join(failures) + ']'


class EnergyMeter:
    """
    Frame and window energy above an idle baseline, from one :class:`EnergySource`.

    Use :meth:`begin` / :meth:`end` around a frame, or ``with meter.window() as w:`` around many;
    :meth:`measure_baseline` sets the idle power subtracted from both.
    """

    def __init__(self, source: Optional[EnergySource] = None, reason: str = '',
                 poll_interval_s: float = 1.0):
        self.source = source
        self.reason = reason or (f'{source.name}' if source else NO_COUNTER_METHOD)
        self.baseline_w = 0.0
        self.failure = ''
        self._stop = threading.Event()
        self._poller = None
        if source is not None and getattr(source, 'needs_polling', False):
            # Reading a wrapping counter often enough is what makes wrap detection sound.
            self._poller = threading.Thread(target=self._poll, args=(poll_interval_s,),
                                            name='gfde-energy-poll', daemon=True)
            self._poller.start()

    @classmethod
    def create(cls, kind: str = 'auto') -> 'EnergyMeter':
        """Open the meter for ``kind``; a missing forced counter is logged, not raised."""
        try:
            source, reason = open_energy_source(kind)
        except EnergySourceUnavailable as exc:
            LOG.error('energy source %r unavailable: %s; energy will be reported as unknown',
                      kind, exc)
            source, reason = None, f'{kind} requested but unavailable ({exc}); no estimate made'
        return cls(source, reason)

    @property
    def available(self) -> bool:
        """Return True when a hardware counter is attached."""
        return self.source is not None

    def _poll(self, interval: float):
        while not self._stop.wait(interval):
            self._read()  # a failed read is logged once and reported by the frames' readings

    def measure_baseline(self, seconds: float = 0.5) -> float:
        """Measure idle power over ``seconds`` of sleep and subtract it from now on (watts)."""
        if self.source is None or seconds <= 0:
            return 0.0
        t0, e0 = time.monotonic(), self._read()
        time.sleep(seconds)
        t1, e1 = time.monotonic(), self._read()
        if math.isnan(e0) or math.isnan(e1):
            return 0.0  # the frames will report unknown energy with self.failure
        self.baseline_w = max(0.0, (e1 - e0) / max(t1 - t0, 1e-9))
        return self.baseline_w

    def _read(self) -> float:
        """Read the counter; NaN (with the reason kept) when it has become unreadable."""
        try:
            return self.source.energy_j()
        except Exception as exc:  # sysfs OSError/ValueError, pynvml's NVMLError, a dead sampler
            if not self.failure:
                LOG.error('energy counter %s unreadable: %s; energy reported as unknown',
                          self.source.name, exc)
            self.failure = f'{self.source.name} counter unreadable ({exc}); no estimate made'
            return math.nan

    def begin(self) -> tuple:
        """Return a start mark for :meth:`end`."""
        if self.source is None:
            return (time.monotonic(), math.nan)
        return (time.monotonic(), self._read())

    def end(self, mark: tuple) -> EnergyReading:
        """
        Energy since ``mark`` above the idle baseline (may be slightly negative: noise).

        A counter that could not be read at either end gives an unknown reading with the
        reason, never an exception in the caller's frame loop.
        """
        if self.source is None:
            return EnergyReading.unknown(self.reason)
        t1, e1 = time.monotonic(), self._read()
        t0, e0 = mark
        if math.isnan(e0) or math.isnan(e1):
            return EnergyReading.unknown(self.failure)
        return EnergyReading(True, (e1 - e0) - self.baseline_w * (t1 - t0), self.source.name)

    def window(self) -> 'EnergyWindow':
        """Context manager that integrates energy over its body: ``w.reading``, ``w.seconds``."""
        return EnergyWindow(self)

    def close(self):
        """Stop polling and release the counter."""
        self._stop.set()
        if self._poller is not None and self._poller.is_alive():
            self._poller.join(timeout=2.0)
        if self.source is not None:
            self.source.close()


class EnergyWindow:
    """Energy over a ``with`` block; ``per_frame(n)`` divides it among ``n`` frames."""

    def __init__(self, meter: EnergyMeter):
        self._meter = meter
        self.reading = None
        self.seconds = math.nan
        self._mark = None

    def __enter__(self):
        self._mark = self._meter.begin()
        return self

    def __exit__(self, *exc):
        self.reading = self._meter.end(self._mark)
        self.seconds = time.monotonic() - self._mark[0]
        return False

    def per_frame(self, frames: int) -> EnergyReading:
        """Return the window's energy divided among ``frames`` frames."""
        if self.reading is None:
            raise ConfigError('the energy window has not been closed yet')
        if frames < 1:
            raise ConfigError(f'frames must be >= 1, got {frames}')
        r = self.reading
        return EnergyReading(r.measured, r.joules / frames, r.source, r.method)
