"""``moalign serve`` against real clients: the official ``openai`` package and plain ``httpx``.

Answers are checked against the library (``HoEModel.generate`` for the same preference and seed), batching from the
server's own ``/metrics``, and every bad input for its status, OpenAI-style body and the field it names.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest

from moalign.hoe import HoEModel
from moalign.models.decoding import decode, model_step
from moalign.models.generation import left_pad

MESSAGES = [{"role": "user", "content": "Tell me about the river and the dog."}]
MODEL = "tiny-hoe"


@pytest.fixture(scope="module")
def library(hoe_dir):
    return HoEModel.from_pretrained(hoe_dir)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def library_answer(library, preference, seed, *, temperature=0.0, top_p=1.0, max_tokens=16, messages=MESSAGES):
    return library.generate([messages], preference, max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                            seeds=[seed])[0]


def test_models_health_and_the_playground_page(server):
    models = httpx.get(server.url + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == [MODEL]
    assert models[0]["objectives"] == ["helpful", "harmless"] and models[0]["default_preference"] == [0.5, 0.5]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "moalign playground" in page.text
    assert sorted(httpx.get(server.url + "/v1/front").json()["methods"]) == ["hoe", "linear"]


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (0.9, 0.8)])
def test_chat_answer_equals_the_library_for_the_same_preference_and_seed(client, library, temperature, top_p):
    for preference, seed in (([0.9, 0.1], 3), ({"harmless": 1.0}, 11)):
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16, seed=seed,
                                               temperature=temperature, top_p=top_p,
                                               extra_body={"preference": preference})
        expected = library_answer(library, preference, seed, temperature=temperature, top_p=top_p)
        assert reply.choices[0].message.content == expected
        assert reply.model == MODEL and reply.usage.completion_tokens > 0
        streamed = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16, seed=seed,
                                                  temperature=temperature, top_p=top_p, stream=True,
                                                  extra_body={"preference": preference})
        chunks = list(streamed)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason


def test_preferences_change_the_answer(client):
    answers = {tuple(p): client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16, temperature=0,
                                                        extra_body={"preference": p}).choices[0].message.content
               for p in ([1, 0], [0, 1])}
    assert answers[(1, 0)] != answers[(0, 1)]


def test_text_completions_stream_and_not_and_match_decoding_the_raw_prompt(client, library):
    prompt = "the dog runs"
    reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=10, temperature=0,
                                      extra_body={"preference": [0.3, 0.7]})
    tokenizer = library.tokenizer
    ids, mask = left_pad([tokenizer(prompt, add_special_tokens=False)["input_ids"]], tokenizer.pad_token_id)
    step = model_step(library, mixing_weights=library.mixing_weights(np.array([[0.3, 0.7]]), batch=1))
    tokens = decode(step, ids, mask, max_new_tokens=10, eos_token_ids=[tokenizer.eos_token_id],
                    pad_token_id=tokenizer.pad_token_id)[0]
    assert reply.choices[0].text == tokenizer.decode(tokens, skip_special_tokens=True)
    streamed = client.completions.create(model=MODEL, prompt=prompt, max_tokens=10, temperature=0, stream=True,
                                         extra_body={"preference": [0.3, 0.7]})
    assert "".join(c.choices[0].text for c in streamed) == reply.choices[0].text
    several = client.completions.create(model=MODEL, prompt=[prompt, "a cat"], max_tokens=10, temperature=0,
                                        extra_body={"preference": [0.3, 0.7]})
    assert [c.index for c in several.choices] == [0, 1] and several.choices[0].text == reply.choices[0].text


def test_stop_strings_end_the_answer_before_them(client, library):
    full = library_answer(library, [0.5, 0.5], 0, max_tokens=24)
    stop = full[len(full) // 2:len(full) // 2 + 2]
    assert stop and stop in full
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0, stop=[stop])
    assert reply.choices[0].message.content == full[:full.index(stop)].strip()
    assert reply.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0,
                                              stop=[stop], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == reply.choices[0].message.content


def test_concurrent_requests_with_different_preferences_share_a_batch_and_keep_their_own(server, library):
    before = server.metrics()
    preferences = [[w, 1 - w] for w in np.linspace(0, 1, 6)]
    barrier = threading.Barrier(len(preferences))

    def ask(index: int) -> str:
        barrier.wait()
        body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 12, "temperature": 0.8, "seed": index,
                "preference": preferences[index]}
        response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(len(preferences)) as pool:
        answers = list(pool.map(ask, range(len(preferences))))
    after = server.metrics()
    assert after["moalign_mixed_preference_batches_total"] > before["moalign_mixed_preference_batches_total"]
    assert after["moalign_batch_size_max"] >= 3
    for index, answer in enumerate(answers):
        assert answer == library_answer(library, preferences[index], index, temperature=0.8, max_tokens=12), index


BAD_REQUESTS = [
    # (path, raw body or JSON, status, param)
    ("/v1/chat/completions", b"{not json", 400, None),
    ("/v1/chat/completions", b"[1, 2]", 400, None),
    ("/v1/chat/completions", {"messages": MESSAGES}, 400, "model"),
    ("/v1/chat/completions", {"model": "/etc/passwd", "messages": MESSAGES}, 404, "model"),
    ("/v1/chat/completions", {"model": MODEL}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "preference": [1.0]}, 400, "preference"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "preference": [-0.5, 1.5]}, 400, "preference"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "preference": [0, 0]}, 400, "preference"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "preference": {"funny": 1}}, 400, "preference"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "preference": ["a", "b"]}, 400, "preference[0]"),
    ("/v1/chat/completions", b'{"model": "tiny-hoe", "messages": [{"role": "user", "content": "x"}], '
                             b'"preference": [NaN, 1]}', 400, "preference"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "preferance": [1, 0]}, 400, "preferance"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "temperature": "hot"}, 400, "temperature"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "temperature": 3}, 400, "temperature"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "top_p": 0}, 400, "top_p"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": 10**6}, 400, "max_tokens"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "seed": 1.5}, 400, "seed"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "stop": ["a", ""]}, 400, "stop[1]"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "n": 2}, 400, "n"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "stream": "yes"}, 400, "stream"),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "stream_options": {"include_usage": "x"}}, 400,
     "stream_options.include_usage"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "word " * 5000}]}, 400,
     "messages"),
    ("/v1/completions", {"model": MODEL, "prompt": 7}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": []}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "echo": True}, 400, "echo"),
    ("/v1/completions", {"model": MODEL, "prompt": ["x"] * 17}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 1000}, 400, "max_tokens"),  # 512 positions
    ("/v1/completions", {"model": MODEL, "prompt": "x" * (5 * 2**20)}, 413, None),
    ("/v1/completions", b'{"model": "tiny-hoe", "prompt": "x", "temperature": NaN}', 400, "temperature"),
]


@pytest.mark.parametrize("path,body,status,param", BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(server, path, body, status, param):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(server.url + path, content=content, headers={"Content-Type": "application/json"},
                          timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_wrong_method_and_unknown_route(server):
    assert httpx.get(server.url + "/v1/chat/completions").status_code == 405
    missing = httpx.get(server.url + "/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_openai_client_reports_a_bad_preference_as_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body={"preference": [1, -1]})
    assert caught.value.body["param"] == "preference"


def test_streamed_usage_when_asked(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])
