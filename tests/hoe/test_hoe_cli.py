"""``moalign hoe build|generate|export`` and ``eval front`` with ``hoe:`` and ``mod:`` methods, as a user runs them."""

import json

import pytest
import torch

from helpers import make_expert, moalign
from moalign.hoe import HoEModel
from moalign.hoe.mod import mod_generate

OBJECTIVES = ["informative", "warm"]


@pytest.fixture(scope="module")
def built(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("hoe-cli")
    experts = [make_expert(tiny_model_path, root / name / "final", seed=7 + k, objectives=OBJECTIVES, scale=0.3,
                           preference=[1.0 if o == name else 0.0 for o in OBJECTIVES])
               for k, name in enumerate(OBJECTIVES)]
    out = moalign("hoe", "build", "--experts", f"informative={experts[0].parent},warm={experts[1]}",
                  "--out", root / "hoe")
    assert out.returncode == 0, out.stderr
    return root, experts


def test_build_writes_a_model_with_a_centre_anchor_and_a_report(built):
    root, _ = built
    model = HoEModel.from_pretrained(root / "hoe")
    assert model.objectives == OBJECTIVES
    assert [a.preference for a in model.config.anchors] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    report = json.loads((root / "hoe" / "build_report.json").read_text())
    assert report["experts"]["warm"]["source"] == "adapter"
    anchor = report["anchors"]["anchor_0.50_0.50"]
    assert anchor["merge"] == "ties" and 0 < anchor["relative_error_max"] < 1


def test_generate_prints_what_the_library_generates(built):
    root, _ = built
    model = HoEModel.from_pretrained(root / "hoe")
    for method, expected in (("hoe", model.generate(["hello", "tell me more"], [0.7, 0.3], max_new_tokens=8)),
                             ("mod", mod_generate(model, ["hello", "tell me more"], [0.7, 0.3], max_new_tokens=8))):
        for decoding in ("dynamic", "static"):
            out = moalign("hoe", "generate", root / "hoe", "hello", "tell me more", "--preference", "0.7,0.3",
                          "--max-new-tokens", "8", "--method", method, "--decoding", decoding)
            assert out.returncode == 0, out.stderr
            assert out.stdout.splitlines() == expected, decoding


def test_export_gives_a_peft_adapter_equal_to_the_model_at_that_preference(built, tiny_model_path):
    from peft import PeftModel

    from moalign.models import load_model

    root, _ = built
    out = moalign("hoe", "export", root / "hoe", "--preference", "warm=1", "--out", root / "warm-lora")
    assert out.returncode == 0, out.stderr
    model = HoEModel.from_pretrained(root / "hoe")
    peft_model = PeftModel.from_pretrained(load_model(tiny_model_path), str(root / "warm-lora")).eval()
    ids = torch.tensor([[3, 14, 15, 92, 65]])
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=ids).logits, model(input_ids=ids, preference=[0, 1]).logits,
                                   rtol=1e-4, atol=1e-5)


def test_front_sweeps_hoe_mod_and_soup(built, tiny_model_path, tmp_path):
    root, (informative, warm) = built
    out = moalign("eval", "front", "--methods", f"hoe=hoe:{root / 'hoe'},mod=mod:{informative}+{warm},"
                  f"soup=soup:{informative}+{warm}", "--objectives", ",".join(OBJECTIVES), "--model", tiny_model_path,
                  "--divisions", "2", "--n-prompts", "3", "--max-new-tokens", "6", "--resamples", "50",
                  "--out", tmp_path / "front")
    assert out.returncode == 0, out.stderr
    methods = json.loads((tmp_path / "front" / "report.json").read_text())["methods"]
    for name in ("hoe", "mod", "soup"):
        assert [p["preference"] for p in methods[name]["points"]] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    # at the vertices all three are the single expert: same greedy answers, same scores
    for vertex in (0, 2):
        scores = [methods[name]["points"][vertex]["scores"] for name in ("hoe", "mod", "soup")]
        assert scores[0] == pytest.approx(scores[1]) and scores[0] == pytest.approx(scores[2])


@pytest.mark.parametrize("args,message", [
    (["generate", "{hoe}", "hi", "--preference", "0.5,-0.5"], "negative"),
    (["generate", "{hoe}", "hi", "--preference", "1,2,3"], "3 weight"),
    (["generate", "{hoe}", "hi", "--preference", "helpful=1"], "unknown objective"),
    (["generate", "{hoe}", "hi", "--preference", "a,b"], "cannot read preference"),
    (["generate", "{hoe}", "hi", "--decoding", "cuda_graph", "--device", "cpu"], "CUDA graphs need the model on a CUDA"),
    (["generate", "{hoe}", "hi", "--decoding", "fast"], "unknown decoding 'fast'"),
    (["export", "{hoe}", "--preference", "0,0", "--out", "{tmp}"], "all weights are zero"),
    (["build", "--experts", "warm=nowhere", "--out", "{tmp}"], "nowhere: no such folder"),
])
def test_bad_input_is_refused_with_a_clear_message(built, tmp_path, args, message):
    root, _ = built
    args = [a.format(hoe=root / "hoe", tmp=tmp_path / "x") for a in args]
    out = moalign("hoe", *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
