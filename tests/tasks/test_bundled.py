import pytest

from moalign.data import disagreement_rate
from moalign.tasks import BundledTaskConfig, build_bundled_task, build_synthetic_task, bundled_prompts, load_or_build_bundled_task
from moalign.tasks import bundled as bundled_module


def test_prompts_are_distinct_and_seeded():
    prompts = bundled_prompts()
    assert len(prompts) >= 300 and len(set(prompts)) == len(prompts)
    assert bundled_prompts(10, seed=1) == bundled_prompts(10, seed=1) != bundled_prompts(10, seed=2)
    with pytest.raises(ValueError, match="between 1 and"):
        bundled_prompts(10_000)


def test_synthetic_task_is_reproducible_and_its_objectives_conflict():
    config = BundledTaskConfig(n_prompts=100)
    task = build_synthetic_task(config)
    assert task.pairs == build_synthetic_task(config).pairs
    assert len(task) == 300 and task.objectives == ("informative", "readable", "warm")
    rate, n = disagreement_rate(task, "informative", "readable")
    assert n > 150 and rate > 0.5  # longer answers are harder to read: the objectives really conflict
    _, present = task.label_matrix()
    assert present.all()


def test_task_cache_is_built_once_and_reused(tiny_model_path, tmp_path, monkeypatch):
    config = BundledTaskConfig(n_prompts=4, samples=((1.0, 8), (1.0, 16)), batch_size=4)
    task, path = load_or_build_bundled_task(tiny_model_path, config, cache=tmp_path, progress=False)
    assert path.exists() and path.with_suffix(".meta.json").exists()

    def fail(*args, **kwargs):
        raise AssertionError("the cached task should have been reused")

    monkeypatch.setattr(bundled_module, "build_bundled_task", fail)
    again, same_path = load_or_build_bundled_task(tiny_model_path, config, cache=tmp_path, progress=False)
    assert same_path == path and again.pairs == task.pairs
    other = BundledTaskConfig(n_prompts=4, samples=((1.0, 8), (1.0, 16)), batch_size=4, seed=1)
    assert bundled_module.task_cache_path(str(tiny_model_path), other, tmp_path) != path


def test_real_model_task_is_seeded_and_objectives_disagree(smollm2_path):
    from moalign.models import load_model, load_tokenizer

    model, tokenizer = load_model(smollm2_path), load_tokenizer(smollm2_path)
    config = BundledTaskConfig(n_prompts=6, samples=((0.7, 24), (1.0, 48), (0.9, 72)), batch_size=6)
    task = build_bundled_task(model, tokenizer, config, progress=False)
    assert len(task) == 18
    assert task.pairs == build_bundled_task(model, tokenizer, config, progress=False).pairs
    rates = [disagreement_rate(task, a, b) for a, b in (("informative", "readable"), ("informative", "warm"), ("readable", "warm"))]
    assert max(rate for rate, n in rates if n) > 0.2
