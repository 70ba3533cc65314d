import numpy as np
import pytest
import torch
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


def test_registered_kinds_build_from_specs_and_models_in_memory_are_methods(tiny_model_path, tmp_path):
    from moalign.eval import METHOD_KINDS, GenerationSettings, Method, model_method, register_method_kind
    from moalign.models import load_model, load_tokenizer

    grid = np.array([[1.0, 0.0], [0.0, 1.0]])
    expert = make_expert(tiny_model_path, tmp_path / "e", 0)
    seen = {}

    def first_only(name, dirs, objectives, grid, loader):
        seen["dirs"] = dirs
        return Method(name, lambda preference, prompts: ["x"] * len(prompts), grid[:1], {"dirs": [str(d) for d in dirs]})

    register_method_kind("first", first_only)
    try:
        method = build_method("f", f"first:{expert}+{expert}", ["a", "b"], grid)
        assert seen["dirs"] == [expert, expert] and method.preferences.shape == (1, 2)
        assert parse_method_specs(f"first:{expert}") == [("first", f"first:{expert}")]
    finally:
        del METHOD_KINDS["first"]
    with pytest.raises(MethodError, match="unknown method kind 'first'.*models:A"):
        build_method("f", f"first:{expert}", ["a", "b"], grid)

    model, tokenizer = load_model(tiny_model_path), load_tokenizer(tiny_model_path, padding_side="left")
    settings = GenerationSettings(max_new_tokens=3)
    in_memory = model_method("m", model, tokenizer, ["a", "b"], preference=[3, 1], settings=settings)
    np.testing.assert_allclose(in_memory.preferences, [[0.75, 0.25]])
    assert len(in_memory.generate(in_memory.preferences[0], ["hello", "cat"])) == 2
    same = model_method("m", model, tokenizer, ["a", "b"], settings=settings)
    assert same.fingerprint == in_memory.fingerprint
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert model_method("m", model, tokenizer, ["a", "b"]).fingerprint != same.fingerprint  # new weights, new cache
