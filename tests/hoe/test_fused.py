"""The one-kernel mixture-LoRA update (Triton), run on the CPU by Triton's interpreter: it equals the update
computed in float64 for any shapes, ranks and per-row or per-token weights, and a HoE model decoding through it (a
router, a preference per row) gives the logits and tokens of the PyTorch form. And it compiles, ahead of time and
without a GPU, to machine code for the GPUs it is meant for."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

assert os.environ.get("TRITON_INTERPRET") == "1"  # set by conftest.py before anything imported triton
pytest.importorskip("triton")

from helpers import make_expert  # noqa: E402
from moalign.hoe import HoEModel, expert_from_adapter, fused  # noqa: E402
from moalign.hoe import layer as layer_module  # noqa: E402
from moalign.models import load_model, load_tokenizer  # noqa: E402
from moalign.models.decoding import decode, model_step  # noqa: E402
from moalign.models.generation import left_pad, render_prompt  # noqa: E402


@given(batch=st.integers(1, 5), seq=st.integers(1, 4), d_in=st.integers(1, 130), d_out=st.integers(1, 150),
       rank=st.integers(1, 40), per_token=st.booleans(), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_the_kernel_equals_the_update_in_float64(batch, seq, d_in, d_out, rank, per_token, seed):
    g = torch.Generator().manual_seed(seed)
    x, a = torch.randn(batch, seq, d_in, generator=g), torch.randn(rank, d_in, generator=g)
    b_t, out = torch.randn(rank, d_out, generator=g), torch.randn(batch, seq, d_out, generator=g)
    weights = torch.rand(batch, seq if per_token else 1, rank, generator=g)
    expected = out.double() + ((x.double() @ a.double().t()) * weights.double()) @ b_t.double()
    result = fused.mixture_lora_update_(out, x, a, b_t, weights)
    assert result is out  # in place
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4 * (1 + d_in ** 0.5))


def test_the_kernel_in_half_precision_stays_within_its_rounding():
    # float16, not bfloat16: Triton's interpreter loads and stores bfloat16 wrongly (zeros from a plain copy kernel)
    g = torch.Generator().manual_seed(0)
    x, a, b_t = (torch.randn(*s, generator=g) for s in ((3, 2, 96), (24, 96), (24, 80)))
    out, weights = torch.randn(3, 2, 80, generator=g), torch.rand(3, 1, 24, generator=g)
    expected = out + ((x @ a.t()) * weights) @ b_t
    result = fused.mixture_lora_update_(out.half(), x.half(), a.half(), b_t.half(), weights.half())
    assert result.dtype == torch.float16
    assert float((result.float() - expected).abs().max()) < 2e-3 * float(expected.abs().max())


def test_weights_that_fit_no_rows_are_refused():
    x, a, b_t = torch.zeros(2, 3, 8), torch.zeros(4, 8), torch.zeros(4, 5)
    with pytest.raises(ValueError, match="do not fit 2 rows of 3 tokens and 4 ranks"):
        fused.mixture_lora_update_(torch.zeros(2, 3, 5), x, a, b_t, torch.zeros(2, 2, 4))


def test_a_hoe_model_decoding_through_the_kernel_equals_the_pytorch_form(tiny_model_path, tmp_path, monkeypatch):
    dirs = [make_expert(tiny_model_path, tmp_path / f"e{k}", seed=70 + k, scale=0.3) for k in range(2)]
    experts = [expert_from_adapter(n, np.eye(2)[k], d) for k, (n, d) in enumerate(zip("ab", dirs))]
    hoe = HoEModel.from_experts(load_model(tiny_model_path), experts, ["a", "b"])
    index = hoe.add_router([0.5, 0.5])
    with torch.no_grad():
        for p in hoe.routers[str(index)].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    tokenizer = load_tokenizer(tiny_model_path)
    rows = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in ("hi", "a dog ran")]
    ids, mask = left_pad(rows, tokenizer.pad_token_id)
    preferences = [[0.2, 0.8], [0.5, 0.5]]
    calls = []

    def fuse_on_cpu(out, x, lora_a, lora_b_t, rank_weights):  # the CUDA condition relaxed, the others kept
        calls.append(x.shape)
        return not torch.is_grad_enabled() and x.dtype == lora_a.dtype

    def run():
        step = model_step(hoe, mixing_weights=hoe.mixing_weights(preferences, batch=2))
        scores = []

        def recording(*args):
            logits, cache = step(*args)
            scores.append(logits.clone())
            return logits, cache

        tokens = decode(recording, ids, mask, max_new_tokens=4, eos_token_ids=[], pad_token_id=tokenizer.pad_token_id)
        return tokens, scores

    expected_tokens, expected_scores = run()
    monkeypatch.setattr(layer_module, "can_fuse", fuse_on_cpu)
    tokens, scores = run()
    assert len(calls) == 4 * len(hoe.mixture_layers)  # every layer, every step, went through the kernel
    assert tokens == expected_tokens
    for got, want in zip(scores, expected_scores):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for layer in hoe.mixture_layers.values():
        layer.use_fused_kernel = False
    calls.clear()
    assert run()[0] == expected_tokens and not calls  # the switch turns the kernel off


def test_a_kernel_that_fails_to_build_leaves_the_layer_answering_with_the_pytorch_form(monkeypatch):
    from moalign.hoe.layer import MixingWeights, MixtureLoraLinear, mixing

    g = torch.Generator().manual_seed(2)
    layer = MixtureLoraLinear(torch.nn.Linear(12, 10), [(torch.randn(3, 12, generator=g), torch.randn(10, 3, generator=g))
                                                       for _ in range(2)], block=0)
    x, weights = torch.randn(4, 2, 12, generator=g), MixingWeights(torch.rand(4, 2, generator=g))
    with torch.no_grad(), mixing(weights):
        expected = layer(x)

        def broken(*args):
            raise RuntimeError("no kernel for this GPU")

        monkeypatch.setattr(layer_module, "can_fuse", lambda *args: True)
        monkeypatch.setattr(layer_module, "mixture_lora_update_", broken)
        with pytest.warns(RuntimeWarning, match="no kernel for this GPU"):
            got = layer(x)
        assert not layer.use_fused_kernel
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = layer(x)  # no second attempt, no second warning
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(again, expected)


COMPILE = """
import inspect, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from moalign.hoe.fused_kernel import mixture_lora_update as kernel

names = list(inspect.signature(kernel.fn).parameters)
for arch in (80, 90):
    for dtype, precision in (("fp32", "ieee"), ("bf16", "tf32"), ("fp16", "tf32")):
        for rank_pad in (16, 64):
            constants = dict(BLOCK_N=16, BLOCK_K=64, BLOCK_O=64, RANK_PAD=rank_pad, PRECISION=precision)
            signature = {n: "constexpr" if n in constants else f"*{dtype}" if n.endswith("_ptr") else "i32"
                         for n in names}
            source = ASTSource(fn=kernel, signature=signature,
                               constexprs={(names.index(n),): v for n, v in constants.items()})
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32))
            assert len(compiled.asm["cubin"]) > 1000
            print(arch, dtype, rank_pad, "ok")
"""


def test_the_kernel_compiles_for_a100_and_h100_without_a_gpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", COMPILE], capture_output=True, text=True, timeout=300,
                         env={**env, "TRITON_CACHE_DIR": str(tmp_path), "TRITON_DEFAULT_FP_FUSION": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("ok") == 12
