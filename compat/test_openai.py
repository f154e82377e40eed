"""OpenAI's official Python client against a real `sedd serve` on loopback.

SEDD_BIN names the sedd binary (scripts/test.sh builds it). Every answer is
checked for content: the same seed gives the text of `sedd sample` and of
ollama's endpoint, the suffix ends every sample, n gives n samples.
"""

import json
import os
import re
import subprocess
import tempfile
import urllib.request

import openai
import pytest

MODEL = "brown-sedd-small"


@pytest.fixture(scope="module")
def server():
    binary = os.environ.get("SEDD_BIN")
    if not binary:
        pytest.skip("SEDD_BIN is not set: build sedd and name it (scripts/test.sh does)")
    cache = tempfile.mkdtemp(prefix="sedd-compat-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDD_MODEL")}
    env["XDG_CACHE_HOME"] = cache
    proc = subprocess.Popen([binary, "serve", "--addr", "127.0.0.1:0", "--threads", "2"],
                            stderr=subprocess.PIPE, text=True, env=env)
    addr = None
    for line in proc.stderr:
        m = re.search(r'"msg":"listening","addr":"([^"]+)"', line)
        if m:
            addr = m.group(1)
            break
    assert addr, "sedd serve did not listen"
    yield {"addr": addr, "bin": binary, "env": env}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://{server['addr']}/v1", api_key="unused", max_retries=0)


def sample(server, *args):
    out = subprocess.run([server["bin"], "sample", "--json", "--threads", "2", *args],
                         check=True, capture_output=True, text=True, env=server["env"])
    return [json.loads(line) for line in out.stdout.splitlines()]


def ollama_generate(server, body):
    req = urllib.request.Request(f"http://{server['addr']}/api/generate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def test_models(client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("gpt-5")
    assert e.value.code == "model_not_found"


def test_completion_fills_the_gap(server, client):
    """The suffix ends every one of n samples; the same seed gives sedd sample's and ollama's text."""
    prompt, suffix = "The jury said", " and then it rained."
    extra = {"steps": 16}
    r = client.completions.create(model=MODEL, prompt=prompt, suffix=suffix, max_tokens=12, n=3, seed=5,
                                  extra_body=extra)
    assert r.object == "text_completion" and len(r.choices) == 3
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" and c.text for c in r.choices)
    assert len({c.text for c in r.choices}) == 3, "three samples, three texts"
    assert r.usage.completion_tokens == 3 * 12 and r.usage.total_tokens == r.usage.prompt_tokens + 36
    length = r.usage.prompt_tokens + 12
    want = sample(server, "--seed", "5", "--steps", "16", "--batch", "3", "--prefix", prompt,
                  "--suffix", suffix, "--length", str(length))
    for c, w in zip(r.choices, want):
        assert prompt + c.text + suffix == w["text"]
        assert w["text"].endswith(suffix)
    ollama = ollama_generate(server, {"prompt": prompt, "suffix": suffix, "stream": False,
                                      "options": {"seed": 5, "steps": 16, "num_predict": 12, "batch": 3}})
    assert ollama["response"] == r.choices[0].text
    assert [s["text"] for s in ollama["samples"]] == [w["text"] for w in want]


def test_completion_stream(server, client):
    """Streamed: the same text as unstreamed, then the usage, then [DONE] (the client stops there)."""
    kw = dict(model=MODEL, prompt="It was", max_tokens=10, seed=9, temperature=0.8, extra_body={"steps": 12})
    whole = client.completions.create(**kw)
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text and text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    want = sample(server, "--seed", "9", "--steps", "12", "--temperature", "0.8", "--prefix", "It was")[0]
    assert want["text"].startswith("It was" + text)


def test_chat(server, client):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who said it?"}]
    kw = dict(model=MODEL, messages=messages, seed=11, extra_body={"steps": 16})
    r = client.chat.completions.create(**kw)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    answer = r.choices[0].message.content
    # The same answer as ollama's /api/chat.
    req = urllib.request.Request(f"http://{server['addr']}/api/chat", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"messages": messages, "stream": False,
                                                  "options": {"seed": 11, "steps": 16}}).encode())
    with urllib.request.urlopen(req) as resp:
        assert json.load(resp)["message"]["content"] == answer
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
                       if c.choices)
    assert streamed == answer
    # The rendering is the documented one: sedd sample continues it with the answer.
    prefix = "System: Answer briefly.\n\nUser: Who said it?\n\nAssistant:"
    text = sample(server, "--seed", "11", "--steps", "16", "--prefix", prefix)[0]["text"]
    assert text[len(prefix):].lstrip(" ").startswith(answer)


def test_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x", extra_body={"steps": 100000})
    assert e.value.param == "steps" and "steps must be ≤" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x", top_p=2)
    assert e.value.param == "top_p"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-5", prompt="x")
