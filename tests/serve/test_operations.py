"""Running the server: API keys, a full queue (429), timeouts, a bounded load test, graceful shutdown, and the
other things it serves (a rewarded soup of experts, a plain model)."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest

from moalign.hoe import HoEModel
from moalign.models import generate_responses, load_model, load_tokenizer
from moalign.models.decoding import decode, model_step
from moalign.models.generation import left_pad
from server_process import Server

MESSAGES = [{"role": "user", "content": "Tell me about the river and the dog."}]
LONG_PROMPT = "the dog"


def chat(url: str, **body) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": "hoe", "messages": MESSAGES, **body}, timeout=60)


@pytest.fixture(scope="module")
def long_prompt_tokens(hoe_dir) -> int:
    """How many tokens the tiny HoE model writes for LONG_PROMPT before stopping, up to 500 (it loops: 500)."""
    model = HoEModel.from_pretrained(hoe_dir)
    tok = model.tokenizer
    ids, mask = left_pad([tok(LONG_PROMPT, add_special_tokens=False)["input_ids"]], tok.pad_token_id)
    step = model_step(model, mixing_weights=model.mixing_weights(np.array([[0.5, 0.5]]), batch=1))
    return len(decode(step, ids, mask, max_new_tokens=500, eos_token_ids=[tok.eos_token_id],
                      pad_token_id=tok.pad_token_id)[0])


def test_the_api_key_is_enforced_when_set(hoe_dir, tmp_path):
    server = Server([hoe_dir, "--api-key-env", "MOALIGN_TEST_KEY"], env={"MOALIGN_TEST_KEY": "s3cret"},
                    log=tmp_path / "log")
    try:
        assert chat(server.url, max_tokens=4).status_code == 401
        wrong = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": "Bearer nope"},
                           json={"model": "hoe", "messages": MESSAGES})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(server.url + "/v1/models").status_code == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model="hoe", messages=MESSAGES, max_tokens=4).choices[0].message
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()


def test_a_missing_key_variable_is_refused_at_start(hoe_dir):
    from helpers import moalign

    out = moalign("serve", hoe_dir, "--api-key-env", "MOALIGN_NO_SUCH_VARIABLE")
    assert out.returncode == 2 and "MOALIGN_NO_SUCH_VARIABLE" in out.stderr


def complete(url: str, tokens: int) -> httpx.Response:
    return httpx.post(url + "/v1/completions", timeout=120, json={
        "model": "hoe", "prompt": LONG_PROMPT, "max_tokens": tokens, "temperature": 0})


def test_a_full_queue_answers_429_with_retry_after(hoe_dir, tmp_path, long_prompt_tokens):
    """While one 500-token request holds the worker, a flood fills the 2-place queue: the rest get 429, the queued
    ones are answered after it (no deadline in play, so the outcome does not depend on the machine's speed)."""
    assert long_prompt_tokens == 500, "the test needs a prompt the tiny model does not stop on"
    server = Server([hoe_dir, "--max-queue", "2", "--max-batch-size", "1", "--batch-window-ms", "0"],
                    log=tmp_path / "log")
    try:
        long: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: long.append(complete(server.url, 500)))
        holder.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (server.metrics()["moalign_requests_in_flight"] >= 1
                                                   and server.metrics()["moalign_queue_depth"] == 0):
            time.sleep(0.01)  # the worker has taken the long request

        results: list[httpx.Response] = []
        flood = [threading.Thread(target=lambda: results.append(complete(server.url, 4))) for _ in range(24)]
        for t in flood:
            t.start()
        for t in flood + [holder]:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert long[0].status_code == 200 and set(codes) == {200, 429} and codes.count(200) <= 2, codes
        rejected = next(r for r in results if r.status_code == 429)
        assert rejected.headers["retry-after"] == "1" and rejected.json()["error"]["type"] == "rate_limit_error"
        assert server.metrics()['moalign_errors_total{code="429"}'] == codes.count(429)
    finally:
        server.stop()


def test_a_request_past_its_deadline_answers_504(hoe_dir, tmp_path, long_prompt_tokens):
    assert long_prompt_tokens == 500, "the test needs a prompt the tiny model does not stop on"
    server = Server([hoe_dir, "--timeout", "0.05"], log=tmp_path / "log")
    try:
        slow = complete(server.url, 500)  # 500 tokens take any CPU far longer than 50 ms
        assert slow.status_code == 504 and "timed out" in slow.json()["error"]["message"]
        assert slow.json()["error"]["code"] == "timeout"
        assert server.metrics()['moalign_errors_total{code="504"}'] == 1
    finally:
        server.stop()


def test_load_of_200_concurrent_requests_with_random_preferences(server, capsys):
    """Bounded: 200 requests at once on loopback, each with its own random preference; all answered."""
    rng = random.Random(0)
    bodies = [{"model": "tiny-hoe", "messages": [{"role": "user", "content": f"question {i}: why?"}],
               "max_tokens": 8, "temperature": 0.7, "seed": i,
               "preference": [w := rng.random(), 1 - w]} for i in range(200)]

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:
            responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=b) for b in bodies))
        return [r.status_code for r in responses]

    started = time.monotonic()
    codes = asyncio.run(asyncio.wait_for(run(), timeout=300))
    elapsed = time.monotonic() - started
    assert codes.count(200) == 200, sorted(set(codes))
    metrics = server.metrics()
    with capsys.disabled():
        print(f"\nload test: 200 concurrent requests in {elapsed:.1f} s, largest batch "
              f"{metrics['moalign_batch_size_max']:.0f}, server peak RSS {server.peak_rss_mib():.0f} MiB")
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_shutdown_finishes_in_flight_requests_and_refuses_new_ones(hoe_dir, tmp_path, long_prompt_tokens):
    assert long_prompt_tokens == 500, "the test needs a prompt the tiny model does not stop on"
    server = Server([hoe_dir], log=tmp_path / "log")
    results: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: results.append(httpx.post(server.url + "/v1/completions", timeout=120,
                              json={"model": "hoe", "prompt": LONG_PROMPT, "max_tokens": 500, "temperature": 0})))
    thread.start()
    deadline = time.monotonic() + 30
    while server.metrics()["moalign_requests_in_flight"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.process.send_signal(signal.SIGTERM)
    # ask as soon as the server says it is draining, while the 500-token request is still being written
    while httpx.get(server.url + "/health", timeout=10).json()["status"] != "draining" and time.monotonic() < deadline:
        time.sleep(0.005)
    refused = chat(server.url, max_tokens=4)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    thread.join(120)
    assert results[0].status_code == 200 and results[0].json()["usage"]["completion_tokens"] == 500
    assert server.process.wait(60) == 0


def test_a_rewarded_soup_of_experts_at_a_vertex_answers_like_that_expert(hoe_dir, tiny_model_path, tmp_path):
    from peft import PeftModel

    experts = {name: hoe_dir.parent / f"expert_{name}" for name in ("helpful", "harmless")}
    server = Server(["--experts", ",".join(f"{n}={p}" for n, p in experts.items()), "--model", tiny_model_path,
                     "--name", "soup"], log=tmp_path / "log")
    try:
        reply = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
            "model": "soup", "messages": MESSAGES, "max_tokens": 12, "temperature": 0, "preference": [0, 1]}).json()
        expert = PeftModel.from_pretrained(load_model(tiny_model_path), str(experts["harmless"])).eval()
        alone = generate_responses(expert, load_tokenizer(tiny_model_path), [MESSAGES], max_new_tokens=12)[0]
        assert reply["choices"][0]["message"]["content"] == alone
    finally:
        server.stop()


@pytest.mark.parametrize("decoding", ["dynamic", "static"])
def test_a_plain_model_is_served_without_preferences(tiny_model_path, tmp_path, decoding):
    server = Server([tiny_model_path, "--name", "base", "--decoding", decoding], log=tmp_path / "log")
    try:
        body = {"model": "base", "messages": MESSAGES, "max_tokens": 10, "temperature": 0}
        reply = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()
        expected = generate_responses(load_model(tiny_model_path), load_tokenizer(tiny_model_path), [MESSAGES],
                                      max_new_tokens=10)[0]
        assert reply["choices"][0]["message"]["content"] == expected and reply["preference"] is None
        refused = httpx.post(server.url + "/v1/chat/completions", json={**body, "preference": [1.0]}, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "preference"
        assert httpx.get(server.url + "/v1/models").json()["data"][0]["objectives"] == []
    finally:
        server.stop()


def test_a_static_cache_server_answers_mixed_preference_batches_as_the_library_does(hoe_dir, tmp_path):
    server = Server([hoe_dir, "--name", "hoe", "--decoding", "static", "--batch-window-ms", "200"],
                    log=tmp_path / "log")
    preferences = [[1.0, 0.0], [0.3, 0.7], [0.5, 0.5], [0.0, 1.0]]
    budgets = [12, 5, 9, 12]
    try:
        barrier = threading.Barrier(len(preferences))

        def ask(index: int) -> str:
            barrier.wait()
            response = chat(server.url, max_tokens=budgets[index], temperature=0.8, seed=index,
                            preference=preferences[index])
            assert response.status_code == 200, response.text
            return response.json()["choices"][0]["message"]["content"]

        with ThreadPoolExecutor(len(preferences)) as pool:
            answers = list(pool.map(ask, range(len(preferences))))
        assert server.metrics()["moalign_batch_size_max"] >= 2  # rows of different budgets shared a static cache
    finally:
        server.stop()
    library = HoEModel.from_pretrained(hoe_dir)
    for index, answer in enumerate(answers):
        assert answer == library.generate([MESSAGES], preferences[index], max_new_tokens=budgets[index],
                                          temperature=0.8, seeds=[index])[0], index


@pytest.mark.parametrize("decoding,message", [("cuda_graph", "CUDA graphs need the model on a CUDA device"),
                                              ("warp", "unknown decoding 'warp'")])
def test_a_decoding_the_device_cannot_run_is_refused_at_start(hoe_dir, decoding, message):
    from helpers import moalign

    out = moalign("serve", hoe_dir, "--decoding", decoding, "--device", "cpu")
    assert out.returncode == 2 and message in out.stderr, out.stderr


class SlowTokenizer:
    """A tokenizer that takes ``delay`` seconds per call (a very long prompt), otherwise the real one."""

    def __init__(self, tokenizer, delay: float):
        self._tokenizer, self._delay = tokenizer, delay

    def __call__(self, *args, **kwargs):
        time.sleep(self._delay)
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def test_tokenizing_a_prompt_does_not_hold_up_other_requests(hoe_dir):
    import dataclasses

    from moalign.serve.app import create_app
    from moalign.serve.model import load_served_model

    served = load_served_model(hoe_dir, name="hoe")
    app = create_app(dataclasses.replace(served, tokenizer=SlowTokenizer(served.tokenizer, delay=1.0)))

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://moalign", timeout=60) as client:
                body = {"model": "hoe", "messages": MESSAGES, "max_tokens": 4, "temperature": 0}
                completion = asyncio.create_task(client.post("/v1/chat/completions", json=body))
                started = time.monotonic()
                await asyncio.sleep(0.2)  # the chat request is being tokenized meanwhile (1 s)
                health = await client.get("/health")
                return health, time.monotonic() - started, await completion

    health, waited, completion = asyncio.run(scenario())
    assert health.status_code == 200 and waited < 0.7, waited  # on the event loop the tokenizer would hold it 1 s
    assert completion.status_code == 200 and completion.json()["choices"][0]["message"]["content"]
