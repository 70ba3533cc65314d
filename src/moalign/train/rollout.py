"""Rollouts for RL: prompts in, sampled responses out, laid out for the policy, reference and value passes.

Generation sits behind :class:`RolloutEngine`, a two-method interface, so the default engine
(:class:`GenerateEngine`: transformers' ``generate`` with its KV cache, batched, sampling parameters) can be
replaced: by :class:`DecodeEngine` (moalign's own decoding loop, for policies ``generate`` cannot drive), or by a
faster one on GPUs. A vLLM engine, for instance, would hold an ``vllm.LLM`` of the same base
model, load the policy's current weights in ``sync_weights`` (for LoRA, save the adapter and pass a
``LoRARequest``), and return ``[output.token_ids for output in llm.generate(prompt_token_ids=...,
sampling_params=SamplingParams(n=1, temperature=..., top_p=..., top_k=..., max_tokens=..., seed=...))]``. moalign does not
require vLLM; everything after generation (log-probs, rewards, advantages) is the same whatever the engine.

Layout: a rollout of N samples is ``[left-padded prompt (P) | right-padded response (T)]`` with explicit
position ids, so the training forward sees the same positions as generation did.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from moalign.models import token_logprobs
from moalign.models.decoding import decode
from moalign.models.static_decoding import DecodingError, check_decoding, decoding_step
from moalign.models.generation import left_pad, padding_id


class RolloutEngine(Protocol):
    """What the RL trainer needs from a generator. Under FSDP2 each forward of the policy is a collective, so an
    engine must keep every process stepping until all are done (``synced_gpus`` in the two engines here)."""

    def generate(self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float, top_p: float, top_k: int, seed: int) -> list[list[int]]:
        """One sampled response per prompt, as token ids (ending with eos when the model stopped); the same
        seed gives the same responses. ``top_k`` 0 means no top-k filtering."""

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Called after each optimizer step: an engine with its own copy of the weights refreshes it here."""


def left_padded_chunks(prompt_ids: Sequence[Sequence[int]], pad: int, batch_size: int, device: torch.device
                       ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(first row, input_ids, attention_mask)`` of each chunk of ``batch_size`` prompts, left-padded, on ``device``."""
    for start in range(0, len(prompt_ids), batch_size):
        input_ids, attention_mask = left_pad(prompt_ids[start:start + batch_size], pad)
        yield start, input_ids.to(device), attention_mask.to(device)


class GenerateEngine:
    """transformers' ``generate`` on the policy itself (no weight copy to sync), in batches of ``batch_size``.

    Sampling draws from a generator seeded by ``seed`` inside ``torch.random.fork_rng``, so the process's
    global random state is the same after a call as before it. ``synced_gpus`` keeps every process decoding
    until all are done, as a sharded (FSDP) model needs: each step is a collective."""

    def __init__(self, tokenizer: Any, batch_size: int = 64, *, synced_gpus: bool = False):
        self.pad = padding_id(tokenizer)
        self.eos = tokenizer.eos_token_id
        self.batch_size = batch_size
        self.synced_gpus = synced_gpus

    @torch.no_grad()
    def generate(self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float, top_p: float, top_k: int, seed: int) -> list[list[int]]:
        device = next(model.parameters()).device
        sampling = ({"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k} if temperature > 0
                    else {"do_sample": False})
        responses: list[list[int]] = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for _, input_ids, attention_mask in left_padded_chunks(prompt_ids, self.pad, self.batch_size, device):
                out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                     pad_token_id=self.pad, eos_token_id=self.eos, synced_gpus=self.synced_gpus,
                                     **sampling)
                for row in out[:, input_ids.shape[1]:].tolist():
                    responses.append(row[:row.index(self.eos) + 1] if self.eos in row else row)
        return responses

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to do: generation runs on the policy being trained."""


def every_process_done(done_here: bool, device: torch.device) -> bool:
    """Whether every process is done, given whether this one is (an all-reduce: every process must call it)."""
    pending = torch.tensor([0.0 if done_here else 1.0], device=device)
    torch.distributed.all_reduce(pending)
    return pending.item() == 0


class DecodeEngine:
    """moalign's decoding loop (:func:`moalign.models.decoding.decode`) on the policy itself, for policies
    ``generate`` cannot drive (a HoE model pinned to a preference): any module whose forward takes a causal LM's
    arguments. Sample ``i`` of a call draws from its own generator, seeded from the call's seed and ``i``, so a
    response depends on its prompt, the seed and its place in the call, not on ``batch_size``; responses keep their
    end-of-sequence token, as :class:`Rollout` expects. ``synced_gpus`` keeps every process decoding until all are
    done, as a sharded (FSDP2) policy needs. ``decoding`` is one of
    :data:`~moalign.models.static_decoding.DECODING_MODES` (``cuda_graph``: each chunk's steps replayed as a CUDA
    graph, for a small policy on a GPU; not with a sharded policy, whose forwards are collectives)."""

    def __init__(self, tokenizer: Any, eos_token_ids: Sequence[int], batch_size: int = 64, *, synced_gpus: bool = False,
                 decoding: str = "dynamic"):
        if synced_gpus and decoding == "cuda_graph":
            raise DecodingError("CUDA-graph rollouts need a policy on one process; a sharded (FSDP2) one decodes "
                                "with 'static' or 'dynamic'")
        self.pad = padding_id(tokenizer)
        self.eos = list(eos_token_ids)
        self.batch_size = batch_size
        self.synced_gpus = synced_gpus
        self.decoding = decoding

    @torch.no_grad()
    def generate(self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float, top_p: float, top_k: int, seed: int) -> list[list[int]]:
        device = next(model.parameters()).device
        check_decoding(self.decoding, device)
        all_done = functools.partial(every_process_done, device=device) if self.synced_gpus else None
        responses: list[list[int]] = []
        for start, input_ids, attention_mask in left_padded_chunks(prompt_ids, self.pad, self.batch_size, device):
            seeds = [(seed + 1_000_003 * (start + i)) % 2**63 for i in range(input_ids.shape[0])]
            step = decoding_step(model, self.decoding, max_new_tokens)
            responses.extend(decode(step, input_ids, attention_mask, max_new_tokens=max_new_tokens,
                                    eos_token_ids=self.eos, pad_token_id=self.pad, temperature=temperature,
                                    top_p=top_p, top_k=top_k, seeds=seeds, keep_eos=True, all_done=all_done))
        return responses

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to do: generation runs on the policy being trained."""


@dataclass
class Rollout:
    """N sampled sequences laid out for the training forward.

    Attributes:
        input_ids, attention_mask, position_ids: ``(N, P + T)``.
        response_mask: ``(N, T)``, 1 on the response's tokens (through its eos); 0 after.
        prompt_width: ``P``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    response_mask: torch.Tensor
    prompt_width: int

    @classmethod
    def build(cls, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad: int) -> Rollout:
        prompts, prompt_mask = left_pad(prompt_ids, pad)
        width = max(1, max(len(r) for r in response_ids))
        responses = torch.full((len(response_ids), width), pad, dtype=torch.long)
        response_mask = torch.zeros((len(response_ids), width), dtype=torch.long)
        for i, r in enumerate(response_ids):
            responses[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
            response_mask[i, :len(r)] = 1
        attention_mask = torch.cat([prompt_mask, response_mask], 1)
        position_ids = (attention_mask.cumsum(1) - 1).clamp_min(0)
        return cls(torch.cat([prompts, responses], 1), attention_mask, position_ids, response_mask, prompts.shape[1])

    def select(self, index: torch.Tensor | Sequence[int]) -> Rollout:
        """The rows ``index``, as a smaller rollout (for mini- and micro-batches)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return Rollout(self.input_ids[index], self.attention_mask[index], self.position_ids[index],
                       self.response_mask[index], self.prompt_width)

    def to(self, device: torch.device) -> Rollout:
        return Rollout(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                       self.response_mask.to(device), self.prompt_width)


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the causal LM under any wrappers (DDP, PEFT) can skip the output layer on the prompt's positions."""
    inner = getattr(model, "module", model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def response_forward(model: torch.nn.Module, rollout: Rollout, *, temperature: float = 1.0, hidden: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logprobs, hidden)`` of the response tokens, ``(N, T)`` and ``(N, T, H)``: the log-probability of each
    response token under the model sampled at ``temperature`` (logits divided by it; 0, greedy, leaves them) and the
    final hidden state at the position that predicted it (what value heads read)."""
    start = rollout.prompt_width - 1
    keep = {"logits_to_keep": rollout.input_ids.shape[1] - start} if accepts_logits_to_keep(model) else {}
    out = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                position_ids=rollout.position_ids, output_hidden_states=hidden, **keep)
    logits = out.logits[:, -(rollout.input_ids.shape[1] - start):]  # the prompt's logits are never needed
    if temperature > 0 and temperature != 1:
        logits = logits / temperature
    logprobs = token_logprobs(logits, rollout.input_ids[:, start:])
    states = out.hidden_states[-1][:, start:-1] if hidden else None
    return logprobs, states
