import numpy as np
import pytest

from helpers import make_expert
from moalign.eval import MethodError, build_method, parse_method_specs


def test_spec_names_default_to_the_kind_or_the_folder():
    assert parse_method_specs("base, runs/mgda/final ,s=soup:a+b,models:x+y") == [
        ("base", "base"), ("mgda", "runs/mgda/final"), ("s", "soup:a+b"), ("models", "models:x+y")]
    with pytest.raises(MethodError, match="no methods"):
        parse_method_specs(" , ")
    with pytest.raises(MethodError, match="bad method spec"):
        parse_method_specs("=base")


def test_points_sit_at_the_training_preference_over_the_judged_objectives(tiny_model_path, tmp_path):
    grid = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    warm = make_expert(tiny_model_path, tmp_path / "warm", 0, objectives=["warm", "informative"], preference=[3.0, 1.0])
    method = build_method("w", str(warm), ["informative", "warm"], grid)
    np.testing.assert_allclose(method.preferences, [[0.25, 0.75]])  # normalised and reordered
    hh = make_expert(tiny_model_path, tmp_path / "hh", 1, objectives=["helpful", "harmless"], preference=[1.0, 0.0])
    method = build_method("hh", str(hh), ["informative", "warm"], grid)  # judged by other objectives: one uniform point
    np.testing.assert_allclose(method.preferences, [[0.5, 0.5]])
    with pytest.raises(MethodError, match="records no training preference over"):
        build_method("set", f"models:{warm}+{hh}", ["informative", "warm"], grid)
    assert build_method("soup", f"soup:{warm}+{hh}", ["informative", "warm"], grid).preferences is grid
