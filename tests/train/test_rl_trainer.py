"""Multi-objective RL on the tiny model: rewards rise where the preference points, PAMA lifts conflicting
objectives together, a killed run resumes bitwise, bad rewards stop the run with the source and step named."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import moalign, run, two_processes
from safetensors.torch import load_file

from moalign.config import ConfigError
from moalign.models import load_model, load_tokenizer
from moalign.objectives import RewardError, RuleScorer, Scorer
from moalign.train import MultiObjectiveRLConfig, MultiObjectiveRLTrainer
from moalign.train.rollout import GenerateEngine, Rollout, response_forward


def config(tiny_model_path, tmp_path, **overrides):
    # The tiny random model's whole distribution is close to uniform over 49k tokens; sampling from its 50 most
    # likely tokens gives a 60-step run something to learn.
    base = dict(model=str(tiny_model_path), task="bundled", output_dir=str(tmp_path / "rl"), per_device_batch_size=8,
                max_new_tokens=24, eval_prompts=32, use_lora=False, kl_coef=0.01, learning_rate=3e-3, logging_steps=1,
                top_k=50)
    return MultiObjectiveRLConfig(**{**base, **overrides})


def evals(output_dir):
    return [r for r in map(json.loads, (output_dir / "log.jsonl").read_text().splitlines()) if "eval" in r]


@pytest.mark.parametrize("preference", [[1.0, 0.0], [0.0, 1.0]])
def test_a_one_hot_morlhf_preference_raises_that_objectives_held_out_reward(tiny_model_path, tmp_path, preference):
    # No KL penalty: the tiny policy drifts 30-60 nats from its reference within 40 steps, so even kl_coef 0.01
    # pulls concise back to its start on some float paths (seen on one CPU: -2.28 -> -1.86 at step 40 -> -2.25).
    # Without it the held-out gain holds on seeds 0-2 for both objectives (the KL is tested by hand elsewhere).
    cfg = config(tiny_model_path, tmp_path, rewards=["concise", "informative"], rule="morlhf", preference=preference,
                 max_steps=100, kl_coef=0.0)
    summary = MultiObjectiveRLTrainer(cfg).train()
    target = ["concise", "informative"][preference.index(1.0)]
    before, after = summary["eval_before"][target], summary["eval_after"][target]
    assert after["low"] > before["high"], (before, after)  # 95 % bootstrap intervals over prompts do not overlap


def test_pama_on_conflicting_objectives_ends_with_neither_below_its_start(tiny_model_path, tmp_path):
    cfg = config(tiny_model_path, tmp_path, rewards=["informative", "readable"], rule="pama", max_steps=60,
                 eval_steps=10)
    MultiObjectiveRLTrainer(cfg).train()
    curve = evals(tmp_path / "rl")
    assert [r["step"] for r in curve] == [0, 10, 20, 30, 40, 50, 60]
    for name in ("informative", "readable"):
        start, tail = curve[0]["eval"][name]["mean"], [r["eval"][name]["mean"] for r in curve[-3:]]
        assert min(tail) >= start, (name, start, tail)  # the last three evaluations, not one number
    logged = [r for r in map(json.loads, (tmp_path / "rl" / "log.jsonl").read_text().splitlines()) if "eval" not in r]
    assert all(0 <= r["pama/zero_fraction"] <= 1 for r in logged)
    assert all(abs(r["informative/deciding_share"] + r["readable/deciding_share"] - 1) < 1e-6 for r in logged)


def test_a_killed_run_resumes_to_the_same_weights_bitwise(tiny_model_path, tmp_path):
    common = dict(rewards=["informative", "readable"], max_steps=4, save_steps=2, use_lora=True, whiten_rewards=True,
                  target_kl=0.5, eval_before=False, eval_prompts=4, num_mini_batches=2, ppo_epochs=2)
    MultiObjectiveRLTrainer(config(tiny_model_path, tmp_path / "a", **common)).train()
    first = MultiObjectiveRLTrainer(config(tiny_model_path, tmp_path / "b", **common))
    first.total_steps = 2  # the kill: the run stops after its checkpoint at step 2 ...
    first.train()
    log = tmp_path / "b" / "rl" / "log.jsonl"
    with open(log, "a") as fh:  # ... having logged a step past it and half a line
        fh.write(json.dumps({"step": 3, "lr": 1.0}) + '\n{"step": 4, "l')
    resumed = MultiObjectiveRLTrainer(config(tiny_model_path, tmp_path / "b", resume_from="latest", **common))
    assert resumed.train()["resumed_at_step"] == 2
    a = load_file(str(tmp_path / "a" / "rl" / "checkpoint-4" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "rl" / "checkpoint-4" / "trainable.safetensors"))
    assert any(name.startswith("value_heads.") for name in a) and any("lora" in name for name in a)
    assert set(a) == set(b) and all(torch.equal(a[n], b[n]) for n in a)
    state_a = json.loads((tmp_path / "a" / "rl" / "checkpoint-4" / "trainer_state.json").read_text())
    state_b = json.loads((tmp_path / "b" / "rl" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state_a["kl_controller"] == state_b["kl_controller"] != {"value": 0.01}
    assert state_a["whitening"] == state_b["whitening"]

    def steps(run):  # the training records (the killed run also evaluated at its early end, step 2)
        return [r for r in map(json.loads, (tmp_path / run / "rl" / "log.jsonl").read_text().splitlines())
                if "eval" not in r]
    assert steps("b") == steps("a") and [r["step"] for r in steps("b")] == [1, 2, 3, 4]


class WrongLength(Scorer):
    name = "short"

    def score(self, prompts, responses):
        return np.zeros(len(responses) - 1)


@pytest.mark.parametrize("scorer, message", [
    (RuleScorer("broken", lambda p, r: float("nan")), "step 0: reward 'broken'"),
    (WrongLength(), "step 0: reward 'short'.*returned 7 value"),
])
def test_bad_rewards_stop_the_run_naming_the_source_and_step(tiny_model_path, tmp_path, scorer, message):
    cfg = config(tiny_model_path, tmp_path, rewards=["informative", "readable"], max_steps=2, eval_before=False)
    trainer = MultiObjectiveRLTrainer(cfg, rewards=[RuleScorer("informative", lambda p, r: 1.0), scorer])
    with pytest.raises(RewardError, match=message):
        trainer.train()


def test_a_reward_model_that_fails_to_load_is_a_one_line_cli_error(tiny_model_path, tmp_path):
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    out = moalign("train", "rl", "--model", str(tiny_model_path), "--task", "bundled",
                  "--rewards", f"helpful=rm:{not_a_model},concise", "--output_dir", str(tmp_path / "run"))
    assert out.returncode == 2 and "reward model for 'helpful' could not be loaded" in out.stderr
    missing = moalign("train", "rl", "--task", "bundled", "--rewards", f"helpful=rm:{tmp_path / 'missing'}")
    assert missing.returncode == 2 and "reward 'helpful': no reward model folder" in missing.stderr
    with pytest.raises(ConfigError, match="unknown reward 'kindness'"):
        config(tiny_model_path, tmp_path, rewards=["kindness"])
    with pytest.raises(ConfigError, match="group needs num_generations"):
        config(tiny_model_path, tmp_path, advantage="group")


def test_mgda_ub_on_per_objective_ppo_losses_with_a_group_baseline_and_kl_in_the_loss_through_the_cli(tiny_model_path, tmp_path):
    out = moalign("train", "rl", "--model", str(tiny_model_path), "--task", "bundled", "--rewards", "concise,readable",
                  "--rule", "mgda_ub", "--advantage", "group", "--num_generations", "2", "--per_device_batch_size", "4",
                  "--max_steps", "2", "--max_new_tokens", "8", "--eval_prompts", "4", "--logging_steps", "1", "--kl_penalty", "loss", "--kl_estimator", "k3",
                  "--output_dir", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr[-2000:]
    steps = [r for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines()) if "eval" not in r]
    assert len(steps) == 2
    for r in steps:
        assert r["concise/weight"] + r["readable/weight"] == pytest.approx(1.0)
        assert "concise/policy_loss" in r and "cosine/concise~readable" in r and r["kl_loss"] >= 0
    assert (tmp_path / "run" / "final" / "adapter_config.json").exists()


def test_rollout_log_probs_do_not_depend_on_padding_and_sampling_leaves_the_global_rng_alone(tiny_model_path):
    model, tokenizer = load_model(tiny_model_path).eval(), load_tokenizer(tiny_model_path)
    prompts = [tokenizer("hello there my friend")["input_ids"], tokenizer("hi")["input_ids"]]
    state = torch.get_rng_state()
    engine = GenerateEngine(tokenizer)
    responses = engine.generate(model, prompts, max_new_tokens=6, temperature=1.0, top_p=1.0, top_k=0, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert responses == engine.generate(model, prompts, max_new_tokens=6, temperature=1.0, top_p=1.0, top_k=0, seed=3)
    together = Rollout.build(prompts, responses, tokenizer.pad_token_id)
    with torch.no_grad():
        batched, _ = response_forward(model, together)
        for i in range(2):
            alone, _ = response_forward(model, Rollout.build([prompts[i]], [responses[i]], tokenizer.pad_token_id))
            n = len(responses[i])
            torch.testing.assert_close(batched[i, :n], alone[0, :n], rtol=1e-4, atol=1e-5)


def test_decode_engine_samples_do_not_depend_on_the_batch_size_and_end_with_eos(tiny_model_path):
    from moalign.models.decoding import eos_ids
    from moalign.train.rollout import DecodeEngine

    model, tokenizer = load_model(tiny_model_path).eval(), load_tokenizer(tiny_model_path)
    eos = eos_ids(model, tokenizer)
    prompts = [tokenizer(text)["input_ids"] for text in ("hello there my friend", "hi", "what is a tree", "ok")]
    settings = dict(max_new_tokens=12, temperature=1.0, top_p=0.9, top_k=50, seed=5)
    state = torch.get_rng_state()
    whole = DecodeEngine(tokenizer, eos).generate(model, prompts, **settings)
    assert torch.equal(torch.get_rng_state(), state)
    assert whole == DecodeEngine(tokenizer, eos, batch_size=3).generate(model, prompts, **settings)
    assert whole != DecodeEngine(tokenizer, eos).generate(model, prompts, **{**settings, "seed": 6})
    for response in whole:
        assert 0 < len(response) <= 12 and all(t not in eos for t in response[:-1])
    free = DecodeEngine(tokenizer, []).generate(model, prompts, **settings)  # no end-of-sequence token at all
    stop = free[0][2]
    ended = DecodeEngine(tokenizer, [stop]).generate(model, prompts, **settings)
    for got, full in zip(ended, free):  # the first end-of-sequence token ends the response and is kept
        assert got == (full[:full.index(stop) + 1] if stop in full else full)
    assert len(ended[0]) <= 3
    greedy = DecodeEngine(tokenizer, [tokenizer.eos_token_id]).generate(model, prompts[:1], **{**settings, "temperature": 0.0})
    reference = model.generate(input_ids=torch.tensor([prompts[0]]), max_new_tokens=12, do_sample=False,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)[0, len(prompts[0]):]
    expected = reference.tolist()
    assert greedy[0] == (expected[:expected.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in expected
                         else expected)


def test_decode_engine_rollouts_over_a_static_cache_equal_the_growing_cache_ones(tiny_model_path):
    from moalign.models.decoding import eos_ids
    from moalign.models.static_decoding import DecodingError
    from moalign.train.rollout import DecodeEngine

    model, tokenizer = load_model(tiny_model_path).eval(), load_tokenizer(tiny_model_path)
    eos = eos_ids(model, tokenizer)
    prompts = [tokenizer(text)["input_ids"] for text in ("hello there my friend", "hi", "what is a tree", "ok")]
    settings = dict(max_new_tokens=10, temperature=1.0, top_p=0.9, top_k=50, seed=3)
    dynamic = DecodeEngine(tokenizer, eos, batch_size=3).generate(model, prompts, **settings)
    assert DecodeEngine(tokenizer, eos, batch_size=3, decoding="static").generate(model, prompts, **settings) == dynamic
    with pytest.raises(DecodingError, match="CUDA graphs need the model on a CUDA device"):
        DecodeEngine(tokenizer, eos, decoding="cuda_graph").generate(model, prompts, **settings)
    with pytest.raises(DecodingError, match="sharded"):
        DecodeEngine(tokenizer, eos, synced_gpus=True, decoding="cuda_graph")


def test_rollouts_by_the_decoding_loop_over_a_static_cache_train_what_the_growing_cache_trains(tiny_model_path,
                                                                                                  tmp_path):
    from moalign.train.rollout import DecodeEngine

    common = dict(rewards=["informative", "readable"], max_steps=2, save_steps=2, use_lora=True, eval_before=False,
                  eval_prompts=4, per_device_batch_size=4, max_new_tokens=8, rollout_engine="decode")
    weights = []
    for decoding in ("dynamic", "static"):
        trainer = MultiObjectiveRLTrainer(config(tiny_model_path, tmp_path / decoding, rollout_decoding=decoding,
                                                 **common))
        assert isinstance(trainer.engine, DecodeEngine) and trainer.engine.decoding == decoding
        trainer.train()
        weights.append(load_file(str(tmp_path / decoding / "rl" / "checkpoint-2" / "trainable.safetensors")))
    assert set(weights[0]) == set(weights[1]) and all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])


@pytest.mark.parametrize("options,message", [
    (dict(rollout_engine="vllm"), "unknown rollout_engine 'vllm'"),
    (dict(rollout_engine="decode", rollout_decoding="fast"), "unknown rollout_decoding 'fast'"),
    (dict(rollout_decoding="static"), "rollout_decoding applies to rollout_engine: decode"),
])
def test_bad_rollout_settings_are_refused(tiny_model_path, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        config(tiny_model_path, tmp_path, rewards=["informative"], **options)


def test_sampling_ignores_the_models_generation_config_and_log_probs_follow_the_temperature(tiny_model_path):
    """The rollout samples from the policy the PPO ratio describes: top_k comes from the RL config (0: the whole
    distribution), never from the model's generation config, and the log-probs are those of logits / temperature."""
    model, tokenizer = load_model(tiny_model_path).eval(), load_tokenizer(tiny_model_path)
    model.generation_config.top_k = 1  # would make every sample the greedy answer
    prompts = [tokenizer("hello there my friend")["input_ids"]] * 4
    engine = GenerateEngine(tokenizer)
    greedy = engine.generate(model, prompts[:1], max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, seed=0)[0]
    sampled = engine.generate(model, prompts, max_new_tokens=8, temperature=1.5, top_p=1.0, top_k=0, seed=0)
    assert any(r != greedy for r in sampled)
    top_1 = engine.generate(model, prompts, max_new_tokens=8, temperature=1.5, top_p=1.0, top_k=1, seed=0)
    assert all(r == greedy for r in top_1)

    rollout = Rollout.build(prompts[:2], sampled[:2], tokenizer.pad_token_id)
    with torch.no_grad():
        got, _ = response_forward(model, rollout, temperature=1.5)
        logits = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                       position_ids=rollout.position_ids).logits.double()
    start = rollout.prompt_width - 1
    targets = rollout.input_ids[:, start + 1:]
    expected = torch.log_softmax(logits[:, start:-1] / 1.5, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = rollout.response_mask.bool()
    torch.testing.assert_close(got[mask].double(), expected[mask], rtol=1e-4, atol=1e-5)


def test_batch_mean_granularity_gives_every_token_the_batch_mean_of_the_clipped_advantages(tiny_model_path, tmp_path):
    experiences = {}
    for granularity in ("token", "batch_mean"):
        cfg = config(tiny_model_path, tmp_path / granularity, rewards=["informative", "readable"], rule="pama",
                     pama_granularity=granularity, max_steps=1, eval_prompts=2, per_device_batch_size=4)
        experiences[granularity] = MultiObjectiveRLTrainer(cfg).make_experience(0)
    token, batch = experiences["token"], experiences["batch_mean"]
    mask = token["rollout"].response_mask.float().unsqueeze(-1)
    expected = (token["advantages"].clamp_min(0) * mask).sum((0, 1)) / mask.sum()
    torch.testing.assert_close(batch["advantages"], expected.expand_as(batch["advantages"]) * mask)
    assert torch.all(expected > 0)


def test_skipping_the_rollout_log_prob_pass_computes_the_same_update(tiny_model_path, tmp_path):
    """With the KL in the loss, a group baseline and one update per rollout, the rollout policy's log-probs come
    from the update's own forward; forcing the separate pass must give the same step."""
    weights = []
    for force_pass in (False, True):
        cfg = config(tiny_model_path, tmp_path / str(force_pass), rewards=["informative", "readable"], rule="pama",
                     advantage="group", num_generations=2, per_device_batch_size=4, kl_penalty="loss",
                     kl_estimator="k3", kl_coef=0.1, max_steps=2, eval_before=False, eval_prompts=2)
        trainer = MultiObjectiveRLTrainer(cfg)
        assert trainer.rollout_policy_is_current
        trainer.rollout_policy_is_current = not force_pass
        for step in range(2):
            trainer.training_step(step)
        weights.append([p.detach().clone() for p in trainer.params])
    for a, b in zip(*weights):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_prompt_sources_alpaca_eval_instructions_hh_dialogues_and_the_bundled_task(shared_data, tmp_path):
    from moalign.train.rl_prompts import load_rl_prompts

    alpaca = config("tiny", tmp_path, task=None, prompt_files=[str(shared_data / "alpaca-eval" / "alpaca_eval.jsonl")],
                    max_prompts=50)
    prompts = load_rl_prompts(alpaca)
    assert len(prompts) == 50 and all(isinstance(p, str) and p for p in prompts)
    hh = config("tiny", tmp_path, task=None, prompt_adapter="hh_rlhf",
                prompt_files=[str(shared_data / "hh-rlhf-harmless-base-test" / "test.jsonl.gz")])
    dialogues = load_rl_prompts(hh)
    assert all(isinstance(p, list) and p[-1]["role"] == "user" for p in dialogues)
    assert len({json.dumps(p) for p in dialogues}) == len(dialogues)  # distinct
    assert len(load_rl_prompts(config("tiny", tmp_path))) > 300  # the bundled instructions
    with pytest.raises(ConfigError, match="unknown prompt_adapter"):  # when the config is made, before any file is read
        config("tiny", tmp_path, task=None, prompt_files=["x.jsonl"], prompt_adapter="csv")


def test_example_configs_load():
    from pathlib import Path

    from moalign.config import load_config
    from moalign.train import RewardModelConfig

    examples = Path(__file__).resolve().parents[2] / "examples"
    assert load_config(RewardModelConfig, examples / "rm_hh_smollm2.yaml").file_objectives == ["helpful", "harmless"]
    rl = load_config(MultiObjectiveRLConfig, examples / "rl_pama_hh_smollm2.yaml", {"rewards": "concise,warm"})
    assert rl.rule == "pama" and rl.rewards == ["concise", "warm"]


def test_two_processes_share_the_evaluation_and_report_what_one_process_reports(tiny_model_path, tmp_path):
    """5 held-out prompts over 2 processes (3 + 2, one filler sample): with rewards of the prompt alone, the gathered
    report (means and bootstrap intervals) is exactly the one-process report, on both processes."""
    from rl_eval_worker import evaluate

    one = evaluate(str(tiny_model_path), tmp_path / "one")
    run(two_processes(str(Path(__file__).resolve().parents[1] / "rl_eval_worker.py"), str(tmp_path),
                      str(tiny_model_path)), tmp_path)
    for rank in range(2):
        report = json.loads((tmp_path / f"eval-{rank}.json").read_text())
        for name in ("length", "checksum"):
            assert report[name] == one[name], (rank, name)
        assert report["response_tokens"]["mean"] > 0
