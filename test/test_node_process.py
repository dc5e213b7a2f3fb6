# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Integration tier across processes: the installed executables, started as a user would.

``classifier_node`` runs in its own process on a tiny bundle file with a remapped camera topic
and receives 640x480 rgb8 frames (921,600 B: only deliverable with the Fast DDS profile that
conftest points FASTDDS_DEFAULT_PROFILES_FILE at). ``classifier_lifecycle_node`` is brought up
through its lifecycle services. Every wait is bounded.
"""

import threading
import time

from gfde_msgs.msg import Classification
from gfde_perception.ros.conversions import array_to_imgmsg
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from runtime_fixtures import make_tiny_bundle
from sensor_msgs.msg import Image

pytestmark = pytest.mark.ros

FAST_MODEL = ['-p', 'model.backend:=torch', '-p', 'model.threads:=1', '-p', 'model.warmup:=1',
              '-p', 'model.energy:=none', '-p', 'model.schedule:=sequential']


def bundle_args(tmp_path):
    make_tiny_bundle(tmp_path, name='tiny')
    return ['-p', f'model.bundle:={tmp_path / "tiny.gfde"}'] + FAST_MODEL


def wait_until(predicate, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class Spinner:
    def __init__(self, context, node):
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self.context = context
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self.stop.set()
        self.thread.join(10.0)
        self.executor.shutdown()


def test_installed_node_classifies_vga_frames_from_another_process(rclpy_context, node_process,
                                                                   tmp_path):
    proc = node_process('classifier_node', args=['--ros-args', '-r', '__node:=gfde_proc',
                                                 '-r', 'image:=camera/image_raw']
                        + bundle_args(tmp_path))
    assert proc.wait_for_output('classifier ready', timeout=90), proc.output()
    probe = rclpy.create_node('gfde_process_probe', context=rclpy_context)
    results = {}
    qos = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
    probe.create_subscription(Classification, 'classification',
                              lambda m: results.setdefault(m.header.frame_id, m), qos)
    pub = probe.create_publisher(Image, 'camera/image_raw', 1)
    spinner = Spinner(rclpy_context, probe)
    try:
        assert wait_until(lambda: pub.get_subscription_count() > 0, 30), proc.output()
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        wanted = [f'vga-{i}' for i in range(5)]
        for frame_id in wanted:
            msg = array_to_imgmsg(frame, 'rgb8')
            msg.header.frame_id = frame_id
            msg.header.stamp.sec = 1_700_000_000

            def resend(msg=msg):
                pub.publish(msg)
                return msg.header.frame_id in results

            # Best effort: re-send until this frame's result is back (bounded).
            assert wait_until(lambda fid=frame_id: resend() or fid in results, 20, 0.2), \
                f'no result for {frame_id}:\n{proc.output()[-2000:]}'
        for frame_id in wanted:
            result = results[frame_id]
            assert result.source_topic == '/camera/image_raw'
            assert 0 <= result.exit_index < result.num_exits
            assert result.header.stamp.sec == 1_700_000_000
        assert proc.running()
    finally:
        spinner.close()
        probe.destroy_node()
    assert proc.stop() in (0, -2), proc.output()[-2000:]


def test_installed_lifecycle_node_comes_up_through_its_services(rclpy_context, node_process,
                                                                tmp_path):
    proc = node_process('classifier_lifecycle_node',
                        args=['--ros-args', '-r', '__node:=gfde_managed'] + bundle_args(tmp_path))
    assert proc.wait_for_output('unconfigured', timeout=60), proc.output()
    probe = rclpy.create_node('gfde_lifecycle_probe', context=rclpy_context)
    change = probe.create_client(ChangeState, '/gfde_managed/change_state')
    get = probe.create_client(GetState, '/gfde_managed/get_state')
    spinner = Spinner(rclpy_context, probe)

    def call(client, request, timeout=60):
        future = client.call_async(request)
        assert wait_until(future.done, timeout), proc.output()
        return future.result()

    try:
        assert change.wait_for_service(timeout_sec=30) and get.wait_for_service(timeout_sec=30)
        for transition, label in ((Transition.TRANSITION_CONFIGURE, 'inactive'),
                                  (Transition.TRANSITION_ACTIVATE, 'active'),
                                  (Transition.TRANSITION_DEACTIVATE, 'inactive'),
                                  (Transition.TRANSITION_CLEANUP, 'unconfigured')):
            request = ChangeState.Request()
            request.transition.id = transition
            assert call(change, request).success, proc.output()
            assert call(get, GetState.Request()).current_state.label == label
        assert 'model freed' in proc.output()
    finally:
        spinner.close()
        probe.destroy_node()
