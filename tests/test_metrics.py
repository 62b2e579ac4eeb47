import numpy as np
import pytest
from fundus_edge.measure.metrics import MetricAccumulator, best_threshold, confusion, metrics_from_counts


def test_hand_computed_counts():
    # tp=3 fp=1 fn=2 tn=4
    m = metrics_from_counts(3, 1, 2, 4)
    assert m.f1 == pytest.approx(6 / 9)
    assert m.iou == pytest.approx(3 / 6)
    assert m.miou == pytest.approx((3 / 6 + 4 / 7) / 2)
    assert m.acc == pytest.approx(0.7)
    assert m.se == pytest.approx(3 / 5)
    assert m.sp == pytest.approx(4 / 5)
    assert m.precision == pytest.approx(3 / 4)
    pe = (4 * 5 + 6 * 5) / 100
    assert m.kappa == pytest.approx((0.7 - pe) / (1 - pe))


def test_confusion_respects_fov():
    pred = np.array([[1, 1], [0, 0]], bool)
    truth = np.array([[1, 0], [1, 0]], bool)
    assert confusion(pred, truth) == (1, 1, 1, 1)
    fov = np.array([[1, 0], [1, 1]], bool)
    assert confusion(pred, truth, fov) == (1, 0, 1, 1)


def test_pooled_is_not_mean_of_images():
    acc = MetricAccumulator(threshold=0.5, with_auc=False)
    a = acc.add(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 1, 0, 0], bool))
    b = acc.add(np.array([1.0, 0.0, 0.0, 0.0, 0, 0, 0, 0]), np.array([1, 1, 1, 1, 0, 0, 0, 0], bool))
    assert a.f1 == 1.0 and b.f1 == pytest.approx(2 / 5)
    assert acc.pooled().f1 == pytest.approx(2 * 3 / (2 * 3 + 0 + 3))


def test_auc_perfect_and_inverted():
    t = np.array([0, 0, 1, 1], bool)
    acc = MetricAccumulator()
    assert acc.add(np.array([0.1, 0.2, 0.8, 0.9]), t).auc == pytest.approx(1.0)
    assert MetricAccumulator().add(np.array([0.9, 0.8, 0.2, 0.1]), t).auc == pytest.approx(0.0)
    # ties count half
    assert MetricAccumulator().add(np.array([0.5, 0.5, 0.5, 0.5]), t).auc == pytest.approx(0.5)


def test_pooled_auc_without_per_image_auc():
    t = np.array([0, 0, 1, 1], bool)
    acc = MetricAccumulator(per_image_auc=False)
    assert acc.add(np.array([0.1, 0.2, 0.8, 0.9]), t).auc is None
    acc.add(np.array([0.9, 0.8, 0.2, 0.1]), t)
    assert acc.pooled().auc == pytest.approx(0.5)  # the pooled figure still ranks every pixel


def test_best_threshold_finds_separating_level():
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.75, 0.9])
    t = np.array([0, 0, 0, 1, 1, 1], bool)
    thr, f1 = best_threshold([p], [t])
    assert 0.3 < thr <= 0.7 and f1 == pytest.approx(1.0)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError):
        confusion(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


@pytest.mark.drive
def test_second_observer_matches_published(drive_root):
    """DRIVE test 2nd_manual against 1st_manual inside the FOV: the published human figures."""
    from fundus_edge.runtime.images import read_binary

    acc = MetricAccumulator(with_auc=False)
    for n in range(1, 21):
        first = read_binary(drive_root / "test" / "1st_manual" / f"{n:02d}_manual1.gif")
        second = read_binary(drive_root / "test" / "2nd_manual" / f"{n:02d}_manual2.gif")
        fov = read_binary(drive_root / "test" / "mask" / f"{n:02d}_test_mask.gif")
        acc.add(second, first, fov)
    m = acc.pooled()
    assert m.f1 == pytest.approx(0.789, abs=0.003)
    assert m.acc == pytest.approx(0.947, abs=0.002)
    assert m.se == pytest.approx(0.775, abs=0.004)
    assert m.sp == pytest.approx(0.973, abs=0.002)


def test_timing_harness_budget_and_p99():
    from fundus_edge.measure.timing import P99_MIN_RUNS, TimingPolicy, time_calls

    calls = []
    t = time_calls(lambda: calls.append(1) or 2.0, TimingPolicy(warmup=2, runs=7, min_runs=3, budget_s=60))
    assert (
        len(calls) == 9 and t.runs == 7 and t.p50 == 2.0 and t.p99 is None
    )  # 7 runs: p99 would be the maximum
    t = time_calls(lambda: 1.0, TimingPolicy(warmup=0, runs=500, min_runs=4, budget_s=0.0))
    assert t.runs == 4  # the budget is spent: the minimum still runs
    t = time_calls(
        lambda: 1.0, TimingPolicy(warmup=0, runs=P99_MIN_RUNS, min_runs=P99_MIN_RUNS, budget_s=0.0)
    )
    assert t.p99 == 1.0
