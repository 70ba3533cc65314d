"""Batched decoding with a KV cache, where each row samples from its own ``torch.Generator``.

HF ``generate`` samples from the global random generator, which concurrent callers would share; here every row
owns a generator seeded from its request's seed, so a row's tokens depend only on its prompt, preference and seed,
not on what else is in the batch or running in other threads, and the global random state is never touched. The
next-token distribution comes from a ``step`` function, so a plain or PEFT model (``generate_responses``), HoE
(one pass) and MOD (K passes) share the loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]
"""``step(new_ids, attention_mask, position_ids, cache) -> (log-probabilities or logits (B, V) of the next token,
cache)``; ``cache`` is None on the first call."""


def filter_top_k(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Logits with all but the ``top_k`` largest per row set to -inf (``None`` or 0: unchanged)."""
    if not top_k or top_k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


#: transformers' ``generate`` samples from the 50 most likely tokens when a model's generation config sets no top_k.
TRANSFORMERS_DEFAULT_TOP_K = 50


def default_top_k(model: torch.nn.Module) -> int:
    """The top_k HF ``generate`` would sample ``model`` with (its generation config's, else transformers' 50), so
    moalign's decoding samples the same distribution as the rest of moalign (evaluation, RL rollouts)."""
    value = getattr(getattr(model, "generation_config", None), "top_k", None)
    return TRANSFORMERS_DEFAULT_TOP_K if value is None else int(value)


def filter_top_p(logits: torch.Tensor, top_p: float | torch.Tensor) -> torch.Tensor:
    """Logits with everything outside the smallest set of tokens holding ``top_p`` of the mass set to -inf
    (``top_p`` one value, or one per row as a ``(B, 1)`` tensor; rows at 1 or more are unchanged)."""
    top_p = torch.as_tensor(top_p, dtype=torch.float32, device=logits.device)
    if bool((top_p >= 1.0).all()):
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop = (torch.cumsum(probs, dim=-1) - probs > top_p) & (top_p < 1.0)
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter(-1, order, sorted_logits)


TokenHook = Callable[[int, list[int]], bool]
"""``hook(row, tokens) -> stop``: called after each new token of a row with that row's tokens so far; returning
True ends the row there (stop strings, a cancelled request). Streaming servers read the tokens as they come."""


def _per_row(value: Any, batch: int, name: str) -> list:
    if isinstance(value, (int, float)):
        return [value] * batch
    values = list(value)
    if len(values) != batch:
        raise ValueError(f"{len(values)} values of {name} for {batch} rows")
    return values


@torch.no_grad()
def decode(
    step: Step,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int | Sequence[int],
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    temperature: float | Sequence[float] = 0.0,
    top_p: float | Sequence[float] = 1.0,
    top_k: int | None = None,
    seeds: Sequence[int] | None = None,
    keep_eos: bool = False,
    on_token: TokenHook | None = None,
    all_done: Callable[[bool], bool] | None = None,
) -> list[list[int]]:
    """New token ids per row of a left-padded batch, each ending before its first end-of-sequence token (or with
    it, with ``keep_eos``, as RL rollouts want them), after its ``max_new_tokens``, or where ``on_token`` says.

    ``temperature``, ``top_p`` and ``max_new_tokens`` are one value for all rows or one per row (a server batches
    requests with different settings). A row at temperature 0 is greedy; otherwise row ``i`` samples with a
    generator seeded ``seeds[i]`` from the distribution at its temperature restricted to the ``top_k`` most likely
    tokens, then to its ``top_p`` nucleus (the order transformers applies them in). A row's tokens depend only on
    its own prompt and settings, never on the other rows' settings.

    For a model sharded over processes (FSDP2), where each forward is a collective, pass ``all_done``: called with
    whether this process's rows are all finished, it returns whether every process's are. A process keeps stepping
    (its outputs unchanged) until then, so every process runs the same forwards; all must pass the same budgets.
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    temperatures = [float(t) for t in _per_row(temperature, batch, "temperature")]
    nuclei = _per_row(top_p, batch, "top_p")
    budgets = [int(n) for n in _per_row(max_new_tokens, batch, "max_new_tokens")]
    sampled = [i for i in range(batch) if temperatures[i] > 0]
    seeds = list(seeds) if seeds is not None else [0] * batch
    if len(seeds) != batch:
        raise ValueError(f"{len(seeds)} seeds for {batch} rows")
    generators = [torch.Generator(device=device).manual_seed(int(seeds[i])) for i in sampled]
    if sampled:
        sampled_rows = torch.tensor(sampled, device=device)
        sampled_temperature = torch.tensor([temperatures[i] for i in sampled], device=device)[:, None]
        nucleus = [float(nuclei[i]) for i in sampled]
        sampled_top_p = torch.tensor(nucleus, device=device)[:, None] if min(nucleus) < 1.0 else None
    eos = set(eos_token_ids)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    new_ids, cache = input_ids, None
    step_positions = positions
    # Bookkeeping stays on the host: one device-to-host copy of the new tokens per step (on a GPU each extra
    # read of a device value is a synchronisation).
    finished = [b <= 0 for b in budgets]
    finished_rows = torch.tensor(finished, dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(max(budgets, default=0)):
        if all(finished) if all_done is None else all_done(all(finished)):
            break
        scores, cache = step(new_ids, attention_mask, step_positions, cache)
        scores = scores.float()
        token = scores.argmax(dim=-1)
        if sampled:
            logits = filter_top_k(scores.index_select(0, sampled_rows) / sampled_temperature, top_k)
            probs = torch.softmax(logits if sampled_top_p is None else filter_top_p(logits, sampled_top_p), dim=-1)
            picks = [torch.multinomial(probs[j], 1, generator=g) for j, g in enumerate(generators)]
            token = token.index_copy(0, sampled_rows, torch.cat(picks))
        token = token.masked_fill(finished_rows, pad_token_id)
        newly_finished = False
        for i, t in enumerate(token.tolist()):
            if finished[i]:
                continue
            if t in eos:
                finished[i] = newly_finished = True
                if not keep_eos:
                    continue
            out[i].append(t)
            stop = on_token is not None and bool(on_token(i, out[i]))
            if stop or len(out[i]) >= budgets[i]:
                finished[i] = newly_finished = True
        if newly_finished:
            finished_rows = torch.tensor(finished, dtype=torch.bool, device=device)
        new_ids = token[:, None]
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=-1)
        step_positions = step_positions[:, -1:] + 1
    return out


@functools.cache
def cache_keyword() -> str:
    """The name under which a causal LM's forward takes its KV cache and its output returns it: ``cache`` from
    transformers 5.25 (``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def forward_with_cache(model: torch.nn.Module, cache: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``model(**kwargs)`` continuing from ``cache`` (None: start one); returns the output and the new cache."""
    name = cache_keyword()
    output = model(**kwargs, use_cache=True, **{name: cache})
    return output, getattr(output, name)


def model_step(model: torch.nn.Module, **forward_kwargs: Any) -> Step:
    """A :data:`Step` calling a causal LM (``forward_kwargs`` are passed on, e.g. HoE's ``preference``)."""

    def step(new_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, cache: Any):
        output, cache = forward_with_cache(model, cache, input_ids=new_ids, attention_mask=attention_mask,
                                           position_ids=position_ids, **forward_kwargs)
        return output.logits[:, -1], cache

    return step


def eos_ids(model: torch.nn.Module, tokenizer: Any) -> list[int]:
    """End-of-sequence ids from the model's generation config and the tokenizer."""
    ids = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update([configured] if isinstance(configured, int) else configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def generate_texts(
    make_step: Callable[[slice], Step],
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    device: torch.device,
    eos_token_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seeds: Sequence[int],
    batch_size: int,
    top_k: int | None = None,
    progress: bool = False,
    desc: str = "generating",
) -> list[str]:
    """Decode ``prompts`` in batches (rendered with the chat template, left-padded by hand so the tokenizer is
    never changed); ``make_step(rows)`` gives the step for the rows ``prompts[rows]``."""
    from tqdm.auto import tqdm

    from moalign.models.generation import left_pad, padding_id, render_prompt

    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    pad = padding_id(tokenizer)
    outputs: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, leave=False):
        rows = slice(start, start + batch_size)
        ids = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts[rows]]
        input_ids, attention_mask = left_pad(ids, pad)
        tokens = decode(make_step(rows), input_ids.to(device), attention_mask.to(device), max_new_tokens=max_new_tokens,
                        eos_token_ids=eos_token_ids, pad_token_id=pad, temperature=temperature, top_p=top_p,
                        top_k=top_k, seeds=seeds[rows])
        outputs.extend(t.strip() for t in tokenizer.batch_decode(tokens, skip_special_tokens=True))
    return outputs
