"""The lost-cluster watchdog's logic, without Ray: a fake clock and probes that answer, fail or block."""

from __future__ import annotations

import threading
import time

import pytest

from e5ray.errors import ConfigError
from e5ray.executors.watchdog import (
    LOST_TIMEOUT_S,
    NO_NODE_TIMEOUT_S,
    ClusterWatch,
    Watchdog,
    call_within,
    can_host,
    lost_timeout_s,
    no_node_timeout_s,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_head_that_answers_no_probe_for_the_bound_is_lost_and_not_a_moment_before():
    clock = Clock()
    watch = ClusterWatch(10.0, clock=clock)
    clock.now += 9.9
    assert watch.verdict() is None
    watch.answered(can_host=True)
    clock.now += 10.0
    assert watch.verdict() is None
    clock.now += 0.1
    assert "head (GCS) answered no call for 10 s" in (watch.verdict() or "")


def test_no_node_that_can_host_is_lost_only_when_no_unit_finished_for_the_bound_either():
    clock = Clock()
    watch = ClusterWatch(10.0, clock=clock)
    watch.answered(can_host=False)
    clock.now += 6
    watch.unit_finished()  # a result still in flight when the nodes went
    clock.now += 5
    watch.answered(can_host=False)
    assert watch.verdict() is None  # 11 s without a host, but a unit finished 5 s ago
    clock.now += 5.1
    watch.answered(can_host=False)
    assert "no live node can host an actor of the pool" in (watch.verdict() or "")


def test_a_node_that_can_host_again_resets_the_wait():
    clock = Clock()
    watch = ClusterWatch(10.0, clock=clock)
    watch.answered(can_host=False)
    clock.now += 8
    watch.answered(can_host=True)  # a node came back (or the autoscaler added one)
    clock.now += 1
    watch.answered(can_host=False)
    clock.now += 8
    watch.answered(can_host=False)
    assert watch.verdict() is None


def test_a_cluster_that_can_grow_is_not_held_to_its_live_nodes_but_still_to_its_head():
    clock = Clock()
    watch = ClusterWatch(10.0, can_grow=True, clock=clock)
    for _ in range(5):
        clock.now += 5
        watch.answered(can_host=False)
    assert watch.verdict() is None  # pending actors are what make the autoscaler add nodes
    clock.now += 11
    assert "head (GCS)" in (watch.verdict() or "")


def test_no_node_to_host_the_pool_has_its_own_longer_bound_and_zero_turns_it_off():
    clock = Clock()
    watch = ClusterWatch(10.0, no_host_s=60.0, clock=clock)
    for _ in range(10):  # 50 s of answers that no node can host: within an autoscaler's time
        clock.now += 5
        watch.answered(can_host=False)
    assert watch.verdict() is None
    for _ in range(3):  # 65 s: 60 s since the first answer that said so
        clock.now += 5
        watch.answered(can_host=False)
    assert watch.verdict() is None
    clock.now += 5
    watch.answered(can_host=False)
    assert "E5RAY_RAY_NO_NODE_TIMEOUT" in (watch.verdict() or "")
    off = ClusterWatch(10.0, no_host_s=0.0, clock=clock)
    for _ in range(100):
        clock.now += 5
        off.answered(can_host=False)
    assert off.verdict() is None  # and the head still answers, so nothing else ends it


def test_can_host_needs_a_live_node_with_the_cpus_and_gpus_of_one_actor():
    head = {"Alive": True, "Resources": {"CPU": 0.0}}
    dead = {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}
    small = {"Alive": True, "Resources": {"CPU": 2.0}}
    gpu = {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}
    assert not can_host([head, dead], 1, 0)
    assert can_host([head, small], 2, 0) and not can_host([head, small], 4, 0)
    assert not can_host([small], 1, 0.34) and can_host([small, gpu], 1, 0.34)
    assert not can_host([], 1, 0)


def test_a_probe_that_blocks_for_good_ends_in_one_call_of_on_lost_within_the_bound():
    release = threading.Event()
    probes: list[int] = []
    lost: list[str] = []

    def blocked() -> bool:
        probes.append(1)
        release.wait()  # a call to a frozen GCS
        return True

    started = time.monotonic()
    dog = Watchdog(ClusterWatch(0.4), blocked, lost.append).start()
    try:
        while not lost and time.monotonic() - started < 5:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        time.sleep(0.3)
    finally:
        release.set()
        dog.stop()
    assert len(lost) == 1 and "head (GCS)" in lost[0]
    assert 0.4 <= elapsed <= 0.4 + 0.1 + 0.5  # the bound, a period (bound / 4), slack
    assert len(probes) == 1  # one probe in flight at a time, never one more per period


def test_a_probe_that_raises_is_no_answer_and_one_that_answers_keeps_the_cluster():
    lost: list[str] = []
    dog = Watchdog(ClusterWatch(0.4), lambda: True, lost.append).start()
    time.sleep(1.0)
    dog.stop()
    assert lost == []

    def failing() -> bool:
        raise ConnectionError("GCS unavailable")

    dog = Watchdog(ClusterWatch(0.4), failing, lost.append).start()
    time.sleep(1.0)
    dog.stop()
    assert len(lost) == 1 and "head (GCS)" in lost[0]


def test_a_stopped_watchdog_never_calls_on_lost():
    lost: list[str] = []
    dog = Watchdog(ClusterWatch(0.2), lambda: threading.Event().wait() or True, lost.append).start()
    dog.stop()
    time.sleep(0.6)
    assert lost == []


def test_the_bound_comes_from_the_environment_and_a_bad_value_is_named():
    assert lost_timeout_s({}) == LOST_TIMEOUT_S == 30.0
    assert lost_timeout_s({"E5RAY_RAY_LOST_TIMEOUT": "8"}) == 8.0
    assert lost_timeout_s({"E5RAY_RAY_LOST_TIMEOUT": "0"}) == 0.0  # off
    assert no_node_timeout_s({}) == NO_NODE_TIMEOUT_S == 300.0
    assert no_node_timeout_s({"E5RAY_RAY_NO_NODE_TIMEOUT": "45"}) == 45.0
    with pytest.raises(ConfigError, match="E5RAY_RAY_NO_NODE_TIMEOUT.*'soon'"):
        no_node_timeout_s({"E5RAY_RAY_NO_NODE_TIMEOUT": "soon"})
    for bad in ("soon", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match=f"E5RAY_RAY_LOST_TIMEOUT must be .* got '{bad}'"):
            lost_timeout_s({"E5RAY_RAY_LOST_TIMEOUT": bad})


def test_call_within_returns_the_answer_or_the_error_and_gives_up_on_a_call_that_blocks():
    assert call_within(lambda: 42, 1.0, "t") == (True, 42)
    done, error = call_within(lambda: 1 / 0, 1.0, "t")
    assert done and isinstance(error, ZeroDivisionError)
    started = time.monotonic()
    assert call_within(lambda: threading.Event().wait(), 0.2, "t") == (False, None)
    assert time.monotonic() - started < 2
