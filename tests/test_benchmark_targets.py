"""benchmarks/targets.py: the targets are data, checked on a run's rows by their fields (not by the text
a report shows), apart from the rendering."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("benchmark_targets", ROOT / "benchmarks" / "targets.py")
targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(targets)


def preprocess_row(name, backend, setting, ratio, exact="bit-exact", impl=None):
    return {"name": name, "backend": backend, "setting": setting, "ratio": ratio, "exact": exact,
            "impl": impl or name, "vs": "HF"}


def test_preprocess_targets_select_rows_by_fields_and_hold_bound_and_exactness():
    for name, backend, setting, bound in targets.PREPROCESS:
        at_bound = targets.preprocess_checks([preprocess_row(name, backend, setting, bound)])
        assert [ok for ok, _ in at_bound] == [True], (name, backend, setting)
        over = targets.preprocess_checks([preprocess_row(name, backend, setting, bound),
                                          preprocess_row(name, backend, setting, bound * 1.01)])
        assert [ok for ok, _ in over] == [False]  # the worst size decides
        inexact = targets.preprocess_checks([preprocess_row(name, backend, setting, 0.1, exact="max abs diff 1")])
        assert [ok for ok, _ in inexact] == [False] and "NOT exact" in inexact[0][1]
    # the same text with other fields is another row: no target of the PIL transform sees a torchvision row
    disguised = preprocess_row("port Qwen2_5_VLImageTransform", "torchvision", "", 0.9,
                               impl="port Qwen2_5_VLImageTransform")
    checks = targets.preprocess_checks([disguised])
    assert len(checks) == 1 and "1.0x" in checks[0][1]  # judged by the torchvision target (1.0), not 0.5


def test_tower_targets_use_the_worst_size_and_the_largest_size_for_memory():
    base = targets.TOWER_BASELINE
    variant, bound = targets.TOWER_TIME[0]
    rss_variant, rss_bound = targets.TOWER_RSS[0]
    by_side = {32: {base: {"median_s": 1.0, "peak_rss_kb": 100}, variant: {"median_s": bound, "peak_rss_kb": 500}},
               72: {base: {"median_s": 2.0, "peak_rss_kb": 100},
                    variant: {"median_s": 2.0 * bound * 1.01, "peak_rss_kb": 100 * rss_bound}}}
    checks = dict((text.split(" (")[0], ok) for ok, text in targets.tower_checks(by_side))
    assert checks[f"{variant} <= {bound}x HF float32"] is False  # 72 is over, 32 at the bound
    assert checks[f"peak RSS of {rss_variant} at 5184 patches <= {rss_bound}x HF's"] is True  # only 72 counts


def test_positions_and_model_targets_and_rendering():
    impl, bound = targets.POSITIONS
    assert targets.positions_checks([{"impl": impl, "ratio": bound, "same": "equal"}])[0][0] is True
    assert targets.positions_checks([{"impl": impl, "ratio": bound / 2, "same": "DIFFERENT"}])[0][0] is False
    rows = [{"impl": "port", "dtype": "bfloat16", "task": "forward", "ratio": targets.MODEL_TIME,
             "rss_ratio": targets.MODEL_RSS * 1.01},
            {"impl": "HF (sdpa)", "dtype": "bfloat16", "task": "forward", "ratio": 1.0, "rss_ratio": 1.0}]
    checks = targets.model_checks(rows)
    assert [ok for ok, _ in checks] == [False]  # HF's own row is no target
    assert targets.render([(True, "a"), (False, "b")]) == ["- [x] a", "- [ ] b"]
