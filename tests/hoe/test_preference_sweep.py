"""On the bundled task, moving the preference from one objective to the other moves each objective's score
monotonically (within noise) over a seeded sample set: HoE built from two experts trained here by RL."""

import numpy as np
import pytest

from helpers import train_rl_experts
from moalign.hoe import HoEModel
from moalign.models import load_model, load_tokenizer
from moalign.objectives import get_scorer
from moalign.tasks import bundled_prompts

OBJECTIVES = ["concise", "informative"]


@pytest.fixture(scope="module")
def hoe(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    experts = train_rl_experts(tiny_model_path, root, OBJECTIVES, steps=100)
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
