"""The verdict's calibration: false alarms and misses against known barriers (docs/validation.md).

The fast part (each scenario once, one planted run on a real structure-function matrix)
runs in CI. The whole suite (five seeds, about 50 audits, 40-70 minutes on two cores: too
long for CI) is ``diag validate --full``, which exits 1 when the false-alarm or the miss
rate exceeds 5% (docs/validation.md).
"""

import pytest

from diag.validate import run_calibration, scenarios


def _check(cal, min_audits):
    assert len(cal.runs) >= min_audits
    # every scenario is scored against its own truth, not its design; the designs hold
    for r in cal.runs:
        if r.kind == "control":
            assert r.truth_slope >= 0.95, r
        elif r.kind == "biased":
            assert r.truth_slope < 0.90, r
    bad = [r for r in cal.runs if r.outcome in ("false-alarm", "miss")]
    return bad


@pytest.mark.slow  # about 2-5 minutes: in CI, not in the developers' fast tier
def test_calibration_fast_part_no_false_alarm_no_miss():
    cal = run_calibration(full=False)
    names = {r.scenario for r in cal.runs}
    assert {s.name for s in scenarios()} <= names and "planted-real" in names
    assert sum(s.kind == "control" for s in scenarios()) >= 4 and sum(s.kind == "biased" for s in scenarios()) >= 4
    bad = _check(cal, 9)
    assert not bad, bad
    assert cal.n_right >= 4 and cal.n_biased >= 4
    # a biased-low verdict names its remedy and a deficit in (0, 1)
    for r in cal.runs:
        if r.level == "biased-low":
            assert r.remedy and 0 < r.scale_deficit < 1
