"""The evaluate module's statistics on step results (no training)."""

import math

import pytest

from stream_dec_lab.evaluate import StepResult, clearly_above, paired_difference


def rows(line: str, accs: list[float], agreements: list[float]) -> list[StepResult]:
    return [StepResult("shift", step, line, acc=acc, acc_many=acc, nmi=0.0, ari=0.0, agreement=agreement,
                       acc_step0=0.0, drift_mean=0.0, drift_max=0.0, relative_drift_mean=0.0, relative_drift_max=0.0,
                       seconds=0.0, accepted=True, violations=(), drift_per_cluster=())
            for step, (acc, agreement) in enumerate(zip(accs, agreements), start=1)]


def test_the_difference_is_paired_by_step():
    """The windows swing ACC by 0.1 from step to step; a line 0.001 above another at every
    step is above it with a zero-width interval, since the swing cancels."""
    swing = [0.5, 0.6, 0.4, 0.55]
    a = rows("a", [x + 0.001 for x in swing], [1.0] * 4)
    b = rows("b", swing, [1.0] * 4)
    mean, half = paired_difference(a + b, "a", "b", "acc")
    assert mean == pytest.approx(0.001) and half == pytest.approx(0.0, abs=1e-12)
    assert clearly_above(a + b, "a", "b") and not clearly_above(a + b, "b", "a")


def test_a_difference_inside_the_noise_is_not_clearly_above():
    a = rows("a", [0.503, 0.498, 0.502, 0.501], [0.99, 0.99, 0.99, 0.99])
    b = rows("b", [0.500, 0.500, 0.500, 0.500], [0.99, 0.99, 0.99, 0.99])
    mean, half = paired_difference(a + b, "a", "b", "acc")
    assert mean == pytest.approx(0.001) and half > mean  # t(3) 95% half-width of +0.003/-0.002/+0.002/+0.001
    assert not clearly_above(a + b, "a", "b")
    higher = rows("c", [0.500] * 4, [0.995, 0.996, 0.995, 0.996])  # same ACC, clearly more agreement
    assert clearly_above(higher + b, "c", "b")


def test_without_two_common_steps_there_is_no_evidence():
    a, b = rows("a", [0.6], [1.0]), rows("b", [0.5, 0.5], [1.0, 1.0])
    assert paired_difference(a + b, "a", "b", "acc") == (pytest.approx(0.1), math.inf)
    assert not clearly_above(a + b, "a", "b")
