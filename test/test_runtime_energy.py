# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Energy counters against fake sysfs trees: RAPL wrap-around, INA3221 layouts, no counter."""

import math
import os
import time

from gfde_perception.runtime.energy import (
    EnergyMeter, EnergySource, EnergySourceUnavailable, Ina3221Source, NO_COUNTER_METHOD,
    open_energy_source, RaplSource)
import pytest


def _write(path, value):
    # sysfs attributes change atomically: write a sibling and rename it over, so the sampling
    # thread never sees a half-written file (that case has its own test below).
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(f'{value}\n')
    os.replace(tmp, path)


def _rapl_tree(root, zones):
    for name, (energy, span) in zones.items():
        _write(root / name / 'energy_uj', energy)
        _write(root / name / 'max_energy_range_uj', span)


def test_rapl_sums_packages_and_ignores_subzones(tmp_path):
    _rapl_tree(tmp_path, {'intel-rapl:0': (1000, 10**9), 'intel-rapl:1': (500, 10**9),
                          'intel-rapl:0:0': (7, 10**9)})
    source = RaplSource(str(tmp_path))
    assert [p.split('/')[-2] for p in source.zones] == ['intel-rapl:0', 'intel-rapl:1']
    assert source.energy_j() == 0.0
    _write(tmp_path / 'intel-rapl:0' / 'energy_uj', 3_001_000)
    _write(tmp_path / 'intel-rapl:1' / 'energy_uj', 1_000_500)
    _write(tmp_path / 'intel-rapl:0:0' / 'energy_uj', 10**8)  # a sub-zone: never counted
    assert source.energy_j() == pytest.approx(4.0)


def test_rapl_counter_wrap_around(tmp_path):
    span = 1_000_000  # the counter restarts from 0 after 1 J
    _rapl_tree(tmp_path, {'intel-rapl:0': (900_000, span)})
    source = RaplSource(str(tmp_path))
    _write(tmp_path / 'intel-rapl:0' / 'energy_uj', 999_999)
    assert source.energy_j() == pytest.approx(0.099999)
    _write(tmp_path / 'intel-rapl:0' / 'energy_uj', 199_999)  # wrapped: +200_000 uJ
    assert source.energy_j() == pytest.approx(0.299999 + 1e-6)
    _write(tmp_path / 'intel-rapl:0' / 'energy_uj', 299_999)
    assert source.energy_j() == pytest.approx(0.399999 + 1e-6)


def test_rapl_missing_or_unreadable(tmp_path):
    with pytest.raises(EnergySourceUnavailable, match='no RAPL'):
        RaplSource(str(tmp_path))
    (tmp_path / 'intel-rapl:0').mkdir()
    _write(tmp_path / 'intel-rapl:0' / 'max_energy_range_uj', 10)
    with pytest.raises(EnergySourceUnavailable, match='cannot read'):
        RaplSource(str(tmp_path))


def _ina_hwmon(root, rails):
    hw = root / 'ina3221' / '1-0040' / 'hwmon' / 'hwmon3'
    for i, (label, mv, ma) in enumerate(rails, start=1):
        _write(hw / f'in{i}_label', label)
        _write(hw / f'in{i}_input', mv)
        _write(hw / f'curr{i}_input', ma)
    _write(hw / 'in7_input', 5000)  # a sum channel without current: skipped
    return hw


def _ina_iio(root, rails):
    dev = root / 'ina3221x' / '0-0040' / 'iio:device0'
    for i, (name, mw) in enumerate(rails):
        _write(dev / f'rail_name_{i}', name)
        _write(dev / f'in_power{i}_input', mw)
    return dev


def _wait_for_power(source, watts, timeout_s=2.0):
    """Wait (bounded) until the sampling thread has seen the new power, then one period more."""
    deadline = time.monotonic() + timeout_s
    while source._last_w != pytest.approx(watts) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert source._last_w == pytest.approx(watts)
    time.sleep(0.01)


def test_ina3221_hwmon_prefers_total_rail_and_integrates(tmp_path):
    hw = _ina_hwmon(tmp_path, [('VDD_IN', 5000, 1000), ('VDD_CPU_GPU_CV', 5000, 400),
                               ('NC', 0, 0)])
    source = Ina3221Source(str(tmp_path), sample_hz=500)
    try:
        assert source.rails == ('VDD_IN',)
        assert source.power_w() == pytest.approx(5.0)
        e0, t0 = source.energy_j(), time.monotonic()
        time.sleep(0.2)
        e1, t1 = source.energy_j(), time.monotonic()
        assert (e1 - e0) == pytest.approx(5.0 * (t1 - t0), rel=0.1)
        _write(hw / 'curr1_input', 2000)  # the power doubles
        _wait_for_power(source, 10.0)
        e2, t2 = source.energy_j(), time.monotonic()
        time.sleep(0.2)
        e3, t3 = source.energy_j(), time.monotonic()
        assert (e3 - e2) / (t3 - t2) == pytest.approx(10.0, rel=0.1)
    finally:
        source.close()


def test_ina3221_rides_out_a_transient_read_failure(tmp_path):
    hw = _ina_hwmon(tmp_path, [('VDD_IN', 5000, 1000)])
    source = Ina3221Source(str(tmp_path), sample_hz=500)
    try:
        (hw / 'curr1_input').write_text('')  # caught mid-update: unreadable for a moment
        deadline = time.monotonic() + 2.0
        while source.read_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert source.read_errors > 0
        _write(hw / 'curr1_input', 2000)  # readable again, at twice the power
        _wait_for_power(source, 10.0)
        e0, t0 = source.energy_j(), time.monotonic()
        time.sleep(0.2)
        e1, t1 = source.energy_j(), time.monotonic()
        assert (e1 - e0) / (t1 - t0) == pytest.approx(10.0, rel=0.1)  # still sampling
    finally:
        source.close()


def test_ina3221_persistent_failure_makes_frames_unknown_not_crash(tmp_path):
    hw = _ina_hwmon(tmp_path, [('VDD_IN', 5000, 1000)])
    source = Ina3221Source(str(tmp_path), sample_hz=500)
    source.FAILURE_WINDOW_S = 0.05
    meter = EnergyMeter(source, 'ina3221')
    try:
        assert meter.end(meter.begin()).measured
        (hw / 'curr1_input').write_text('')  # the rail stays unreadable
        deadline = time.monotonic() + 2.0
        while source._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not source._thread.is_alive()
        with pytest.raises(EnergySourceUnavailable, match='unreadable for'):
            source.energy_j()
        reading = meter.end(meter.begin())
        assert not reading.measured and math.isnan(reading.joules)
        assert 'ina3221 counter unreadable' in reading.method
    finally:
        meter.close()


def test_ina3221_iio_layout_sums_rails_without_total(tmp_path):
    _ina_iio(tmp_path, [('VDD_GPU', 1500), ('VDD_CPU', 500)])
    source = Ina3221Source(str(tmp_path), sample_hz=100)
    try:
        assert source.rails == ('VDD_CPU', 'VDD_GPU')
        assert source.power_w() == pytest.approx(2.0)
    finally:
        source.close()
    chosen = Ina3221Source(str(tmp_path), rails=['VDD_GPU'], sample_hz=100)
    try:
        assert chosen.power_w() == pytest.approx(1.5)
    finally:
        chosen.close()
    with pytest.raises(EnergySourceUnavailable, match='VDD_SOC'):
        Ina3221Source(str(tmp_path), rails=['VDD_SOC'])
    with pytest.raises(EnergySourceUnavailable, match='no INA3221'):
        Ina3221Source(str(tmp_path / 'absent'))


class _FakeCounter(EnergySource):
    name = 'rapl'

    def __init__(self, watts):
        self.watts = watts
        self.t0 = time.monotonic()

    def energy_j(self):
        return self.watts * (time.monotonic() - self.t0)


def test_meter_subtracts_idle_baseline_and_windows():
    counter = _FakeCounter(watts=20.0)
    meter = EnergyMeter(counter, 'rapl')
    assert meter.measure_baseline(0.05) == pytest.approx(20.0, rel=0.05)
    counter.watts = 50.0  # "load": 30 W above idle
    counter.t0 = time.monotonic()  # restart the fake counter at the new power
    mark = meter.begin()
    time.sleep(0.05)
    reading = meter.end(mark)
    elapsed = time.monotonic() - mark[0]
    assert reading.measured and reading.source == 'rapl' and reading.method == ''
    assert reading.joules == pytest.approx(30.0 * elapsed, rel=0.15)
    with meter.window() as window:
        time.sleep(0.05)
    assert window.reading.joules == pytest.approx(30.0 * window.seconds, rel=0.1)
    assert window.per_frame(5).joules == pytest.approx(window.reading.joules / 5)
    meter.close()


def test_no_counter_is_reported_as_unmeasured_with_reason():
    meter = EnergyMeter(None, NO_COUNTER_METHOD)
    reading = meter.end(meter.begin())
    assert not reading.measured and math.isnan(reading.joules)
    assert reading.source == 'none' and 'no energy counter' in reading.method
    assert meter.measure_baseline(0.1) == 0.0


def test_this_host_opens_without_crashing():
    # Whatever this machine has, 'auto' returns a source or (None, a reason), never raises.
    source, reason = open_energy_source('auto')
    assert reason
    if source is None:
        assert 'no energy counter' in reason
    else:
        source.close()
    meter = EnergyMeter.create('nvml')
    if not meter.available:
        assert 'nvml requested but unavailable' in meter.reason
    meter.close()
