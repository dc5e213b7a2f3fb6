# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Split inference: the deadline ledger (ROS-free) and both nodes over real DDS on loopback.

The nodes run the real engines on a tiny split bundle (``split_fixtures``) in one rclpy context
with a probe node that publishes camera frames and collects every ``classification``. To make
the server late on purpose, one test hands the server node a real :class:`SplitServer` whose
``process`` first sleeps on some calls (a timing double: the only way to be late on demand on
loopback; the rate-limited link test in test_split_link.py is late for real).
"""

import threading
import time

from gfde_msgs.msg import Classification
from gfde_perception.errors import ConfigError
from gfde_perception.ros.conversions import array_to_imgmsg
from gfde_perception.ros.split_robot_node import SplitRobotNode
from gfde_perception.ros.split_server_node import SplitServerNode
from gfde_perception.runtime.split import PendingAnswers, SplitRobot, SplitServer
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image
from split_fixtures import make_tiny_split_bundle


# -- the ledger -----------------------------------------------------------------------------

class FakeClock:
    """A settable monotonic clock (seconds)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_each_pending_frame_is_answered_once_by_the_server_or_the_fallback():
    clock = FakeClock()
    ledger = PendingAnswers(0.2, clock=clock)
    for key in range(4):
        ledger.add(key, f'frame{key}')
        clock.now += 0.05
    assert ledger.resolve(1) == 'frame1'           # in time: the server answers it
    assert ledger.resolve(1) is None               # a duplicate answer is not published twice
    clock.now = 100.0 + 0.2 + 1e-9                 # frame 0's deadline has passed, not 2's
    assert ledger.expire() == ['frame0']
    assert ledger.resolve(0) is None               # its server answer comes late
    clock.now += 1.0
    assert ledger.expire() == ['frame2', 'frame3']
    assert ledger.resolve(99) is None              # never offloaded
    assert len(ledger) == 0 and ledger.expire() == []
    assert ledger.counts == {'offloaded': 4, 'server': 1, 'fallback': 3, 'late': 1,
                             'unknown': 2}
    with pytest.raises(ConfigError):
        PendingAnswers(0.0)


def test_drain_answers_everything_still_pending():
    ledger = PendingAnswers(60.0)
    ledger.add('a', 1)
    ledger.add('b', 2)
    with pytest.raises(ConfigError, match='already pending'):
        ledger.add('a', 3)
    assert ledger.drain() == [1, 2] and ledger.counts['fallback'] == 2


# -- the nodes over DDS ---------------------------------------------------------------------

class SlowServer(SplitServer):
    """A real server that sleeps ``delay_s`` before every ``every``-th packet."""

    def __init__(self, bundle, delay_s: float, every: int):
        super().__init__(bundle)
        self.delay_s, self.every, self.calls = delay_s, every, 0

    def process(self, packet):
        self.calls += 1
        if self.calls % self.every == 0:
            time.sleep(self.delay_s)
        return super().process(packet)


class Rig:
    """Robot node, server node and a probe node spun by one background executor."""

    def __init__(self, robot_node, server_node, context):
        self.context = context
        self.robot_node, self.server_node = robot_node, server_node
        self.probe = rclpy.create_node('gfde_split_probe', context=context)
        reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
        self.results = []
        self.lock = threading.Lock()
        self.probe.create_subscription(Classification, 'classification', self._on_result,
                                       reliable)
        self.camera = self.probe.create_publisher(Image, 'image', reliable)
        self.executor = SingleThreadedExecutor(context=context)
        for node in (robot_node, server_node, self.probe):
            if node is not None:
                self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_result(self, msg):
        with self.lock:
            self.results.append(msg)

    def wait_for_subscribers(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.camera.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)

    def send(self, count: int, spacing_s: float):
        rng = np.random.default_rng(0)
        for i in range(count):
            msg = array_to_imgmsg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 'rgb8')
            msg.header.stamp.sec = i + 1  # identifies the frame in the answers
            self.camera.publish(msg)
            time.sleep(spacing_s)

    def wait_for(self, count: int, timeout=30.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.results) >= count:
                    break
            time.sleep(0.05)
        with self.lock:
            return list(self.results)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for node in (self.robot_node, self.server_node, self.probe):
            if node is not None:
                self.executor.remove_node(node)
                node.destroy_node()
        self.executor.shutdown()


@pytest.fixture()
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    # Robot exits off (threshold 1.0): every frame goes to the server.
    return make_tiny_split_bundle(tmp_path_factory.mktemp('split'), split=2,
                                  thresholds=(1.0, 1.0))


def _answers_by_frame(results):
    by_frame = {}
    for msg in results:
        by_frame.setdefault(msg.header.stamp.sec, []).append(msg.answered_by)
    return by_frame


@pytest.mark.ros
def test_server_answers_arrive_once_with_the_original_header(context, bundle):
    robot = SplitRobotNode(SplitRobot(bundle), context=context,
                           parameter_overrides=[Parameter('deadline_ms', value=5000.0)])
    server = SplitServerNode(SplitServer(bundle), context=context)
    rig = Rig(robot, server, context)
    try:
        rig.wait_for_subscribers()
        rig.send(6, 0.3)
        # A frame that arrives while the robot is still busy is superseded by the next one (the
        # node keeps the newest frame, and counts the other): every frame the robot took is
        # answered exactly once, and the books add up to the six frames sent.
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            counts = robot.snapshot()
            if len(rig.wait_for(0, timeout=0)) + counts['dropped.superseded'] >= 6:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # nothing more may arrive
        results = rig.wait_for(7, timeout=0.1)
        answers = _answers_by_frame(results)
        counts = robot.snapshot()
        assert all(by == ['server'] for by in answers.values()), answers
        assert len(answers) + counts['dropped.superseded'] == 6, (answers, counts)
        assert len(answers) >= 3  # at this spacing most frames are processed
        assert all(msg.exit_index == 2 and msg.model_id == bundle.model_id for msg in results)
        assert counts['offloaded'] == counts['server'] == len(answers)
        assert counts['fallback'] == 0
        assert server.snapshot()['answered'] == len(answers)
    finally:
        rig.close()


@pytest.mark.ros
def test_late_server_falls_back_and_every_frame_is_answered_exactly_once(context, bundle):
    robot = SplitRobotNode(SplitRobot(bundle), context=context,
                           parameter_overrides=[Parameter('deadline_ms', value=150.0)])
    server = SplitServerNode(SlowServer(bundle, delay_s=0.5, every=3), context=context)
    rig = Rig(robot, server, context)
    try:
        rig.wait_for_subscribers()
        rig.send(9, 0.1)
        rig.wait_for(9)
        time.sleep(1.5)  # late answers arrive and must not be published again
        answers = _answers_by_frame(rig.wait_for(10, timeout=0.1))
        assert sorted(answers) == list(range(1, 10))
        assert all(len(sides) == 1 for sides in answers.values()), answers
        sides = [s[0] for s in answers.values()]
        assert 'robot-fallback' in sides and 'server' in sides
        counts = robot.snapshot()
        assert counts['offloaded'] == 9 and counts['pending'] == 0
        assert counts['server'] + counts['fallback'] == 9
        assert counts['fallback'] == sides.count('robot-fallback')
        assert counts['late'] >= 1  # the slow answers did come, and were dropped
    finally:
        rig.close()


@pytest.mark.ros
def test_without_a_server_every_frame_gets_the_robot_fallback(context, bundle):
    robot = SplitRobotNode(SplitRobot(bundle), context=context,
                           parameter_overrides=[Parameter('deadline_ms', value=50.0)])
    rig = Rig(robot, None, context)
    try:
        rig.wait_for_subscribers()
        rig.send(4, 0.1)
        answers = _answers_by_frame(rig.wait_for(4))
        assert answers == {i: ['robot-fallback'] for i in range(1, 5)}
    finally:
        rig.close()
