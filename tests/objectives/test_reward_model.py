"""A sequence-classification reward model as scorers: batched and padded, it scores what one unpadded forward does."""

import numpy as np
import pytest
import torch
from helpers import make_reward_model

from moalign.objectives import RewardModelScorer, reward_model_scorers
from moalign.models import render_conversation

PROMPTS = ["hello cat", "the dog runs far away today", "why", "a b c d e f g"]
RESPONSES = ["hi", "it is a long answer with many words in it", "because", ""]


@pytest.fixture(scope="module")
def two_head_reward_model(tiny_model_path, tmp_path_factory):
    return make_reward_model(tiny_model_path, tmp_path_factory.mktemp("rm") / "two-head")


def test_each_head_is_a_scorer_that_matches_unpadded_forwards(two_head_reward_model):
    helpful, harmless = reward_model_scorers(str(two_head_reward_model), batch_size=3)
    assert (helpful.name, harmless.name) == ("helpful", "harmless") and helpful.model is harmless.model
    tokenizer = helpful.tokenizer
    side = tokenizer.padding_side
    expected = []
    with torch.no_grad():
        for prompt, response in zip(PROMPTS, RESPONSES):  # one at a time: no padding at all
            ids = torch.tensor([tokenizer(render_conversation(tokenizer, prompt, response), add_special_tokens=False)["input_ids"]])
            expected.append(helpful.model(input_ids=ids).logits[0].tolist())
    expected = np.array(expected)
    np.testing.assert_allclose(helpful.reward(PROMPTS, RESPONSES), expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(harmless.reward(PROMPTS, RESPONSES), expected[:, 1], rtol=1e-5, atol=1e-6)
    assert tokenizer.padding_side == side  # the shared tokenizer is never changed
    assert not np.allclose(expected[:, 0], expected[:, 1])


def test_heads_by_name_and_bad_heads(two_head_reward_model):
    by_name = RewardModelScorer.from_pretrained(str(two_head_reward_model), head="harmless")
    by_index = RewardModelScorer.from_pretrained(str(two_head_reward_model), head=1, name="safety")
    assert by_name.name == "harmless" and by_index.name == "safety"
    np.testing.assert_allclose(by_name.reward(PROMPTS, RESPONSES), by_index.reward(PROMPTS, RESPONSES))
    with pytest.raises(ValueError, match=r"no head 'funny'; its heads are \['harmless', 'helpful'\]"):
        RewardModelScorer.from_pretrained(str(two_head_reward_model), head="funny")
    with pytest.raises(ValueError, match="outside the reward model's 2 output"):
        RewardModelScorer(by_name.name, by_name.model, by_name.tokenizer, head=2)
