"""On the bundled task, moving the preference from one objective to the other moves each objective's score
monotonically (within noise) over a seeded sample set: HoE built from two experts trained here by RL."""

import numpy as np
import pytest

from moalign.hoe import HoEModel, expert_from_adapter
from moalign.models import load_model, load_tokenizer
from moalign.objectives import get_scorer
from moalign.tasks import bundled_prompts
from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer

OBJECTIVES = ["concise", "informative"]


@pytest.fixture(scope="module")
def hoe(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    experts = []
    for k, objective in enumerate(OBJECTIVES):
        cfg = MultiObjectiveRLConfig(model=str(tiny_model_path), task="bundled", output_dir=str(root / objective),
                                     per_device_batch_size=8, max_new_tokens=24, eval_prompts=8, use_lora=True,
                                     lora_r=8, lora_alpha=16, kl_coef=0.01, learning_rate=1e-2, rewards=OBJECTIVES,
                                     rule="morlhf", preference=list(np.eye(2)[k]), max_steps=100, eval_before=False)
        MultiObjectiveRLTrainer(cfg).train()
        experts.append(expert_from_adapter(objective, np.eye(2)[k], root / objective / "final"))
    return HoEModel.from_experts(load_model(tiny_model_path), experts, OBJECTIVES, tokenizer=load_tokenizer(tiny_model_path))


def test_scores_move_monotonically_with_the_preference(hoe):
    prompts = bundled_prompts(seed=1)[:64]
    scorer = get_scorer("informative")
    means, errors = [], []
    for w in np.linspace(0.0, 1.0, 5):
        texts = hoe.generate(prompts, [1 - w, w], max_new_tokens=24, temperature=1.0, seed=0)
        scores = scorer.reward(prompts, texts)
        means.append(scores.mean())
        errors.append(scores.std(ddof=1) / np.sqrt(len(scores)))
    noise = 2 * max(errors)
    assert all(b >= a - noise for a, b in zip(means, means[1:])), (means, noise)  # never falls beyond noise
    assert means[-1] - means[0] > noise, (means, noise)  # and the ends differ beyond it
    # concise is the mirror image here (both read the response length), so it falls as informative rises
    concise = get_scorer("concise")
    ends = [concise.reward(prompts, hoe.generate(prompts, p, max_new_tokens=24, temperature=1.0, seed=0)).mean()
            for p in ([1.0, 0.0], [0.0, 1.0])]
    assert ends[0] > ends[1]
