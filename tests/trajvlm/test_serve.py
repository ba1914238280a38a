"""trajvlm serve: the official `openai` client against a live uvicorn server on 127.0.0.1 with a tiny TrajVLM.

Plain and streamed answers (equal to the shared inference path's), file / data-URL / frames inputs, multi-turn,
batching of concurrent requests, and every error status: 400 403 404 413 422 429 504, the server alive after each.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'trajvlm[serve]'")
pytest.importorskip("uvicorn", reason="the server needs uvicorn: pip install 'trajvlm[serve]'")
openai = pytest.importorskip("openai", reason="the client tests need the openai package")
httpx = pytest.importorskip("httpx")

from tests.trajvlm.helpers import random_video, save_tiny_trajvlm  # noqa: E402
from trajvlm.inference import generate_batch, load_model  # noqa: E402
from trajvlm.serve import ServeConfig, create_app  # noqa: E402

NAME = "tiny-trajvlm"
JSON_TYPE = {"Content-Type": "application/json"}
QUESTION = "What happens in the video?"


# --------------------------------------------------------------------------------------------- live servers


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run ``app`` with the server's uvicorn setup in a thread on a free loopback port; yields the base URL."""
    from trajvlm.serve.server import bind_socket, make_server

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(app, app.state.cfg, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def write_clip(path: Path, seed: int = 5, frames: int = 6) -> Path:
    from trajtok.io.writer import write_video

    video = random_video(num_frames=frames, height=48, width=48, seed=seed).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    return write_video(path, video, fps=10.0)


def saved_tiny_model(base_path: Path, out: Path, connector: str = "trajtok") -> Path:
    """A tiny TrajVLM saved like a real checkpoint, with a 4-frame processor."""
    return save_tiny_trajvlm(base_path, out, connector=connector, num_frames=4)


@pytest.fixture(scope="module")
def model_dir(tiny_base_path, tmp_path_factory) -> Path:
    return saved_tiny_model(tiny_base_path, tmp_path_factory.mktemp("serve_model"))


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(model_dir, device="cpu")


@pytest.fixture(scope="module")
def media_root(tmp_path_factory) -> Path:
    """A media root with a clip and a corrupt file; beside it (outside the root) a secret clip and a symlink to it."""
    top = tmp_path_factory.mktemp("media")
    root = top / "root"
    root.mkdir()
    write_clip(root / "clip.mp4")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    write_clip(top / "secret.mp4", seed=9)
    (root / "link.mp4").symlink_to(top / "secret.mp4")
    return root


def make_app(loaded, media_root: Path | None, **settings):
    model, processor = loaded
    cfg = ServeConfig(model=Path(NAME), media_root=media_root, **settings)
    return create_app(model, processor, cfg)


@pytest.fixture(scope="module")
def server(loaded, media_root) -> Iterator[str]:
    with live_server(make_app(loaded, media_root, max_upload_mb=1.0, max_concurrency=4)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def video_message(url: str, text: str = QUESTION) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": text}]}
    ]


def data_url(path: Path, media_type: str = "video/mp4") -> str:
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"


def expected_answer(loaded, video_path: Path, text: str = QUESTION, max_new_tokens: int = 8, **sampling) -> str:
    """The answer of the shared inference path (what `trajvlm chat` and evaluation give) for the same request."""
    model, processor = loaded
    frames = processor.load_video(video_path, **sampling)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    return generate_batch(model, processor, [(frames, messages, {"max_new_tokens": max_new_tokens})])[0]


# --------------------------------------------------------------------------------------------- the shared path


def test_generate_batch_reports_answers_and_streams_each_request(loaded, media_root):
    """The hook the server batches through: per-request token counts equal a single VideoChat turn's, and each
    request's streamed pieces make up its answer."""
    from trajvlm.inference import VideoChat

    model, processor = loaded
    frames = processor.load_video(media_root / "clip.mp4")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    requests = [
        (frames, messages, {"max_new_tokens": 7}),
        (None, "Hi", {"max_new_tokens": 7}),
        (random_video(num_frames=4, seed=2), "Describe it.", {"max_new_tokens": 7}),
    ]
    answers, pieces = {}, {}
    texts = generate_batch(
        model, processor, requests, answers=answers, on_text=lambda i, p: pieces.setdefault(i, []).append(p)
    )
    assert sorted(answers) == [0, 1, 2] and [a.text for a in (answers[0], answers[1], answers[2])] == texts
    for i, text in enumerate(texts):
        assert "".join(pieces[i]).strip() == text
    alone = VideoChat(model, processor, video=frames).ask(QUESTION, max_new_tokens=7)
    got = answers[0]
    assert (got.text, got.visual_tokens, got.prompt_tokens, got.new_tokens) == (
        alone.text,
        alone.visual_tokens,
        alone.prompt_tokens,
        alone.new_tokens,
    )
    assert answers[1].visual_tokens == 0 and answers[2].visual_tokens > 0
    assert 0 < got.time_to_first_token_s <= got.total_s


def _run_on(engine, scenario):
    """``scenario()`` run to its end with ``engine`` started; the engine is stopped whatever happens."""
    import asyncio

    engine.start()
    try:
        return asyncio.run(scenario())
    finally:
        engine.stop()


def test_engine_isolates_a_request_that_breaks_its_batch(loaded):
    """A request whose frames make the batched forward raise fails alone (500); its batch-mates are answered."""
    import asyncio

    from trajvlm.serve.engine import Engine, Job

    model, processor = loaded
    engine = Engine(model, processor, ServeConfig(max_concurrency=4, batch_wait_ms=200))
    good = random_video(num_frames=4, seed=1)
    bad = torch.zeros(4, 2, 8, 8, dtype=torch.uint8)  # two channels: the video processor raises inside the batch
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]

    async def scenario():
        loop = asyncio.get_running_loop()
        jobs = [Job(v, messages, {"max_new_tokens": 4}, loop) for v in (good, bad, good)]
        for job in jobs:
            engine.submit(job)
        outcomes = []
        for job in jobs:
            while True:
                kind, value = await asyncio.wait_for(job.events.get(), timeout=60)
                if kind != "text":
                    outcomes.append((kind, value))
                    break
        return outcomes

    outcomes = _run_on(engine, scenario)
    assert [k for k, _ in outcomes] == ["done", "error", "done"]
    assert outcomes[1][1].status == 500 and "channels" in outcomes[1][1].message
    assert outcomes[0][1].text == outcomes[2][1].text
    assert engine.largest_batch == 3  # they were one batch first


# --------------------------------------------------------------------------------------------- answers


def test_models_and_health(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [NAME]
    card = models.data[0].model_dump()
    assert card["connector"] == "trajtok" and card["trajectory_overlay"] is True and card["max_frames"] == 64
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("other")
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["model"] == NAME


def test_file_url_answer_matches_shared_path(client, loaded, media_root):
    out = client.chat.completions.create(
        model=NAME, messages=video_message((media_root / "clip.mp4").as_uri()), max_tokens=8, temperature=0
    )
    choice = out.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_answer(loaded, media_root / "clip.mp4")
    assert choice.finish_reason in ("stop", "length")
    usage = out.usage.model_dump()
    assert usage["video_frames"] == 4  # the model's saved sampling
    assert usage["visual_tokens"] > 0
    assert usage["prompt_tokens"] > usage["visual_tokens"]  # text + visual tokens
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streaming_equals_plain(client, media_root):
    messages = video_message((media_root / "clip.mp4").as_uri())
    plain = client.chat.completions.create(model=NAME, messages=messages, max_tokens=12)
    stream = client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=12, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # it really streamed in pieces
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()


def test_stop_strings_cut_plain_and_streamed(client, media_root):
    messages = video_message((media_root / "clip.mp4").as_uri())
    full = client.chat.completions.create(model=NAME, messages=messages, max_tokens=12).choices[0].message.content
    stop = full.split()[1] if len(full.split()) > 1 else full[1:3]
    cut = client.chat.completions.create(model=NAME, messages=messages, max_tokens=12, stop=[stop])
    assert cut.choices[0].message.content == full[: full.index(stop)].strip()
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model=NAME, messages=messages, max_tokens=12, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut.choices[0].message.content


def test_data_url_upload_and_sampling(client, loaded, media_root):
    clip = media_root / "clip.mp4"
    out = client.chat.completions.create(model=NAME, messages=video_message(data_url(clip)), max_tokens=8)
    assert out.choices[0].message.content == expected_answer(loaded, clip)
    two = client.chat.completions.create(
        model=NAME,
        messages=video_message(data_url(clip)),
        max_tokens=8,
        extra_body={"media_io_kwargs": {"video": {"num_frames": 2}}},
    )
    assert two.usage.model_dump()["video_frames"] == 2
    assert two.choices[0].message.content == expected_answer(loaded, clip, num_frames=2)


def test_presampled_jpeg_frames(client):
    from PIL import Image

    frames = random_video(num_frames=5, height=48, width=48, seed=3).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    parts = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=90)
        parts.append(base64.b64encode(buf.getvalue()).decode())
    url = "data:video/jpeg;base64," + ",".join(parts)
    out = client.chat.completions.create(model=NAME, messages=video_message(url), max_tokens=6)
    usage = out.usage.model_dump()
    assert usage["video_frames"] == 5 and usage["visual_tokens"] > 0  # every pre-sampled frame is used
    thinned = client.chat.completions.create(
        model=NAME,
        messages=video_message(url),
        max_tokens=6,
        extra_body={"media_io_kwargs": {"video": {"num_frames": 3}}},
    )
    assert thinned.usage.model_dump()["video_frames"] == 3


def test_multi_turn_and_text_only(client, media_root):
    first_messages = video_message((media_root / "clip.mp4").as_uri())
    first = client.chat.completions.create(model=NAME, messages=first_messages, max_tokens=6)
    history = [
        *first_messages,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And then?"},
    ]
    second = client.chat.completions.create(model=NAME, messages=history, max_tokens=6)
    u1, u2 = first.usage.model_dump(), second.usage.model_dump()
    assert u2["visual_tokens"] == u1["visual_tokens"]  # the same video, once, in the first user turn
    assert u2["prompt_tokens"] > u1["prompt_tokens"]  # the history is part of the prompt
    text = client.chat.completions.create(
        model=NAME,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=4,
    )
    assert text.usage.model_dump()["visual_tokens"] == 0 and text.choices[0].message.content is not None


def test_concurrent_requests_are_batched(client, server, media_root):
    """Requests that arrive together share generate_batch calls and get the answers they get alone."""
    url = (media_root / "clip.mp4").as_uri()
    questions = [f"Question number {k}?" for k in range(6)]
    alone = [
        client.chat.completions.create(model=NAME, messages=video_message(url, q), max_tokens=6)
        .choices[0]
        .message.content
        for q in questions
    ]
    before = httpx.get(f"{server}/health").json()
    results: dict[int, str] = {}

    def ask(k: int) -> None:
        out = client.chat.completions.create(model=NAME, messages=video_message(url, questions[k]), max_tokens=6)
        results[k] = out.choices[0].message.content

    refused: list[int] = []

    def ask_badly(url: str) -> None:  # bad requests arriving at the same time must not disturb the good ones
        try:
            client.chat.completions.create(model=NAME, messages=video_message(url), max_tokens=6)
        except openai.APIStatusError as e:
            refused.append(e.status_code)

    bad_urls = [(media_root / "broken.mp4").as_uri(), (media_root / "link.mp4").as_uri()]
    threads = [threading.Thread(target=ask, args=(k,)) for k in range(6)]
    threads += [threading.Thread(target=ask_badly, args=(u,)) for u in bad_urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    after = httpx.get(f"{server}/health").json()
    assert [results[k] for k in range(6)] == alone
    assert sorted(refused) == [403, 422]
    assert after["served"] - before["served"] == 6
    assert after["batches"] - before["batches"] < 6 and after["largest_batch"] >= 2  # some requests shared a forward
    assert after["admitted"] == 0


# --------------------------------------------------------------------------------------------- errors


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_malformed_requests_are_400(server, client):
    bad_json = httpx.post(
        f"{server}/v1/chat/completions", content=b'{"model": "x", "messages": [', headers=JSON_TYPE, timeout=10
    )
    assert bad_json.status_code == 400
    assert "not valid JSON" in _error(bad_json)["message"] and _error(bad_json)["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=0)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=NAME, messages=[])
    with pytest.raises(openai.BadRequestError, match="no network access"):
        client.chat.completions.create(model=NAME, messages=video_message("https://example.com/v.mp4"))
    with pytest.raises(openai.BadRequestError, match="num_frames 1000 is over"):
        client.chat.completions.create(
            model=NAME,
            messages=video_message("data:video/mp4;base64,AAAA"),
            extra_body={"media_io_kwargs": {"video": {"num_frames": 1000}}},
        )
    with pytest.raises(openai.BadRequestError, match="not valid base64"):
        client.chat.completions.create(model=NAME, messages=video_message("data:video/mp4;base64,@@@@"))


def test_unknown_model_is_404(client, server):
    with pytest.raises(openai.NotFoundError, match="does not exist") as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.body["code"] == "model_not_found"
    assert httpx.get(f"{server}/nowhere").status_code == 404


def test_paths_outside_media_root_are_403(client, media_root):
    outside = [
        f"file://{media_root}/../secret.mp4",  # '..' out of the root
        (media_root.parent / "secret.mp4").as_uri(),  # an absolute path beside it
        (media_root / "link.mp4").as_uri(),  # a symlink inside the root pointing out of it
        "file:///etc/passwd",
    ]
    for url in outside:
        with pytest.raises(openai.PermissionDeniedError, match="outside the media root") as info:
            client.chat.completions.create(model=NAME, messages=video_message(url))
        assert info.value.body["code"] == "outside_media_root"
    with pytest.raises(openai.NotFoundError, match="video not found"):
        client.chat.completions.create(model=NAME, messages=video_message((media_root / "nothing.mp4").as_uri()))


def test_file_urls_refused_without_media_root(loaded, media_root):
    with live_server(make_app(loaded, None)) as url:
        plain = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.PermissionDeniedError, match="--media-root"):
            plain.chat.completions.create(model=NAME, messages=video_message((media_root / "clip.mp4").as_uri()))


def _read_response(sock: socket.socket) -> str:
    """The whole HTTP response: headers, then as many body bytes as its Content-Length says (or until close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode()
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        None,
    )
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_oversize_upload_is_413_before_the_body_is_read(client, server):
    big = "data:video/mp4;base64," + "A" * (2 * 1024 * 1024)  # 1.5 MiB decoded > --max-upload-mb 1
    with pytest.raises(openai.APIStatusError, match="over this server's limit") as info:
        client.chat.completions.create(model=NAME, messages=video_message(big))
    assert info.value.status_code == 413
    # A client that announces 64 MiB and sends only the headers and a few bytes gets the 413 at once.
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 67108864\r\n\r\n{"model": '
        )
        head = _read_response(sock)
    assert head.startswith("HTTP/1.1 413")
    assert json.loads(head.split("\r\n\r\n", 1)[1])["error"]["code"] == "request_too_large"
    # Without a Content-Length (chunked), reading stops as soon as the bytes pass the limit.
    piece = b"A" * (256 * 1024)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(12):  # 3 MiB > the 2.3 MiB body limit of a 1 MiB upload
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed once the limit was passed
        head = _read_response(sock)
    assert head.startswith("HTTP/1.1 413")


def test_corrupt_video_is_422_naming_the_reason(client, media_root):
    with pytest.raises(openai.UnprocessableEntityError, match="cannot decode the video: .*broken.mp4") as info:
        client.chat.completions.create(model=NAME, messages=video_message((media_root / "broken.mp4").as_uri()))
    assert info.value.body["code"] == "invalid_video"
    junk = "data:video/mp4;base64," + base64.b64encode(b"not a video at all" * 50).decode()
    with pytest.raises(openai.UnprocessableEntityError, match="cannot decode the uploaded video/mp4 video") as info:
        client.chat.completions.create(model=NAME, messages=video_message(junk))
    assert "trajvlm-serve-" not in info.value.body["message"]  # the server's temporary paths stay private


def test_full_queue_is_429_and_timeout_is_504(loaded, media_root):
    """With the model busy (its lock held), one request runs, one waits, the next is refused; waiting past the
    request timeout answers 504; the server answers normally afterwards."""
    app = make_app(loaded, media_root, max_concurrency=1, max_queue=1, request_timeout_s=1.5)
    engine = app.state.engine
    with live_server(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        errors: dict[int, Exception] = {}

        def ask(k: int) -> None:
            try:
                client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
            except openai.APIStatusError as e:
                errors[k] = e

        with engine.lock:
            first = threading.Thread(target=ask, args=(0,))
            first.start()
            _wait_for(lambda: engine.stats()["running"] == 1)
            second = threading.Thread(target=ask, args=(1,))
            second.start()
            _wait_for(lambda: engine.stats()["admitted"] == 2)
            with pytest.raises(openai.RateLimitError, match="busy") as info:
                client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}])
            assert info.value.status_code == 429 and info.value.body["code"] == "queue_full"
            first.join(timeout=20)
            second.join(timeout=20)
        assert {k: e.status_code for k, e in errors.items()} == {0: 504, 1: 504}
        assert errors[0].body["code"] == "timeout"
        out = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert out.choices[0].message.content is not None
        _wait_for(lambda: engine.stats()["admitted"] == 0)


def test_client_leaving_a_stream_frees_its_place(server, media_root):
    url = (media_root / "clip.mp4").as_uri()
    body = {"model": NAME, "messages": video_message(url), "max_tokens": 64, "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        first = next(response.iter_lines())
        assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    _wait_for(lambda: httpx.get(f"{server}/health").json()["admitted"] == 0)


def test_cli_refuses_a_missing_model(tmp_path, capsys):
    from trajvlm.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "error: model directory not found" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--media-root", str(tmp_path / "none")]) == 2
    assert "media root is not a directory" in capsys.readouterr().err


def test_server_survives_every_error(server, client):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    out = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert out.usage.completion_tokens >= 1


def test_trajectory_overlay(server, media_root, loaded):
    got = httpx.post(
        f"{server}/v1/trajectory_overlay", json={"video_url": {"url": (media_root / "clip.mp4").as_uri()}}, timeout=60
    )
    assert got.status_code == 200
    body = got.json()
    assert body["image"].startswith("data:image/gif;base64,") and body["frames"] == 4 and body["trajectories"] >= 1
    gif = base64.b64decode(body["image"].split(",", 1)[1])
    assert gif[:6] in (b"GIF87a", b"GIF89a")
    outside = httpx.post(f"{server}/v1/trajectory_overlay", json={"video_url": {"url": "file:///etc/passwd"}})
    assert outside.status_code == 403


def test_overlay_unavailable_for_pool_model(tiny_base_path, media_root):
    model, processor = load_model(tiny_base_path, device="cpu", num_frames=2)  # a llava-hf base: pool connector
    app = create_app(model, processor, ServeConfig(model=Path(NAME), media_root=media_root))
    with live_server(app) as url:
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["trajectory_overlay"] is False
        got = httpx.post(
            f"{url}/v1/trajectory_overlay", json={"video_url": {"url": (media_root / "clip.mp4").as_uri()}}
        )
        assert got.status_code == 400 and _error(got)["code"] == "overlay_unavailable"
        assert "'pool' connector" in _error(got)["message"]


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------- hostile clients


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width x height`` and whose pixel data is empty: only a header-first check is cheap."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def frames_url(images: list[bytes], media_type: str = "video/png") -> str:
    return f"data:{media_type};base64," + ",".join(base64.b64encode(b).decode() for b in images)


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    from PIL import Image

    pixels = torch.randint(0, 256, (height, width, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buf, format="PNG")
    return buf.getvalue()


def test_large_frames_are_kept_at_model_size(loaded, client, tmp_path):
    """Pre-sampled frames larger than the model's input come back at its size (decoded one by one and resized),
    smaller ones keep theirs; the server answers them."""
    from trajtok.io.video import load_video
    from trajvlm.serve.media import Sampling, load_video_url

    model, processor = loaded
    cfg = ServeConfig(model=Path(NAME), max_upload_mb=1.0)
    side = processor.image_size
    pngs = [png_bytes(5 * side, 3 * side, s) for s in range(3)]
    big = load_video_url(frames_url(pngs), processor, cfg, Sampling())
    assert tuple(big.shape) == (3, 3, side, side) and big.dtype == torch.uint8
    folder = tmp_path / "frames"  # the same frames read by the decoder at the model's size: the same pixels
    folder.mkdir()
    for k, data in enumerate(pngs):
        (folder / f"frame_{k}.png").write_bytes(data)
    assert torch.equal(big, load_video(folder, size=(side, side)).frames)
    small = load_video_url(frames_url([png_bytes(40, 30, s) for s in range(2)]), processor, cfg, Sampling())
    assert tuple(small.shape) == (2, 3, 30, 40)
    out = client.chat.completions.create(
        model=NAME,
        messages=video_message(frames_url([png_bytes(4 * side, 4 * side, s) for s in range(3)])),
        max_tokens=3,
    )
    assert out.usage.model_dump()["video_frames"] == 3


def test_images_over_the_pixel_limit_are_422(client, media_root, tmp_path):
    from trajtok.io.video import MAX_IMAGE_PIXELS, VideoDecodeError, load_video

    for width, height in ((9000, 9000), (14000, 14000)):  # over the server's limit; the second is a Pillow "bomb"
        assert width * height > MAX_IMAGE_PIXELS
        url = frames_url([png_bytes(32, 32), png_header_only(width, height)])
        with pytest.raises(openai.UnprocessableEntityError, match="frame 1 is") as info:
            client.chat.completions.create(model=NAME, messages=video_message(url), max_tokens=2)
        message = info.value.body["message"]
        assert info.value.body["code"] == "image_too_large"
        assert f"{width}x{height}" in message or f"{width * height} pixels" in message
    # the decoder's own guard: an image folder or still image read by trajtok.io.video, from its header alone
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "frame_0.png").write_bytes(png_header_only(9000, 9000))
    with pytest.raises(VideoDecodeError, match="9000x9000, over the limit"):
        load_video(folder)
    still = media_root / "huge.png"
    still.write_bytes(png_header_only(9000, 9000))
    try:
        with pytest.raises(openai.UnprocessableEntityError, match="9000x9000, over the limit") as info:
            client.chat.completions.create(model=NAME, messages=video_message(still.as_uri()), max_tokens=2)
        assert str(media_root) not in info.value.body["message"]
    finally:
        still.unlink()


def test_max_tokens_over_the_limit_is_400(loaded):
    with live_server(make_app(loaded, None, max_tokens_limit=50, default_max_tokens=8)) as url:
        plain = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="max_tokens 51 is over this server's limit of 50") as info:
            plain.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=51)
        assert info.value.body["param"] == "max_tokens"
        out = plain.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=50)
        assert out.usage.completion_tokens <= 50
    with pytest.raises(ValueError, match="default_max_tokens 256 is over max_tokens_limit 100"):
        ServeConfig(max_tokens_limit=100)


LONG = 1000  # new tokens that take the tiny model seconds; a cancelled request must stop long before


def test_closed_stream_stops_generating_and_frees_its_place(loaded):
    app = make_app(loaded, None, max_concurrency=1)
    engine = app.state.engine
    body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": LONG, "stream": True}
    with live_server(app) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
            for line in response.iter_lines():  # the role chunk, then read until the first text arrives
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break
        _wait_for(lambda: engine.stats()["admitted"] == 0 and engine.stats()["running"] == 0)
        stats = engine.stats()
        assert stats["cancelled"] == 1 and stats["served"] == 0 and stats["running"] == 0  # stopped mid-answer
        out = httpx.post(
            f"{url}/v1/chat/completions", json={**body, "stream": False, "max_tokens": 3}, timeout=30
        ).json()
        assert out["usage"]["completion_tokens"] >= 1


def test_timed_out_and_abandoned_requests_stop_generating(loaded):
    """A 504 and a client that gives up both cancel their generation (counted as cancelled, not served)."""
    app = make_app(loaded, None, max_concurrency=1, request_timeout_s=1.0)
    engine = app.state.engine
    body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": LONG}
    with live_server(app) as url:
        got = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert got.status_code == 504 and _error(got)["code"] == "timeout"
        _wait_for(lambda: engine.stats()["admitted"] == 0 and engine.stats()["running"] == 0)
        assert engine.stats()["cancelled"] == 1 and engine.stats()["served"] == 0
    app = make_app(loaded, None, max_concurrency=1)
    engine = app.state.engine
    with live_server(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=0.5)
        _wait_for(lambda: engine.stats()["admitted"] == 0 and engine.stats()["running"] == 0)
        assert engine.stats()["cancelled"] == 1 and engine.stats()["served"] == 0


def test_place_is_freed_only_when_the_work_stops(loaded):
    """A cancelled job the worker has taken keeps its place until its row stops; a waiting one frees it at once."""
    import asyncio

    from trajvlm.serve.engine import Engine, Job

    model, processor = loaded
    engine = Engine(model, processor, ServeConfig(max_concurrency=1, batch_wait_ms=0))
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]

    async def scenario():
        loop = asyncio.get_running_loop()
        running = Job(None, messages, {"max_new_tokens": LONG, "min_new_tokens": LONG}, loop)
        waiting = Job(None, messages, {"max_new_tokens": 4}, loop)
        with engine.lock:  # the model is busy: the worker takes the first job and waits for the lock
            for job in (running, waiting):
                engine.admit()
                engine.submit(job)
            await asyncio.to_thread(_wait_for, lambda: running.state == "running")
            waiting.cancel()
            assert engine.stats()["admitted"] == 1  # the waiting job's place is free at once
            running.cancel()
            await asyncio.sleep(0.2)
            assert engine.stats()["admitted"] == 1 and running.state == "running"  # still at work: still counted
        await asyncio.to_thread(_wait_for, lambda: engine.stats()["admitted"] == 0)
        return running

    running = _run_on(engine, scenario)
    tokens = len(processor.tokenizer(running.raw)["input_ids"])
    assert running.state == "done" and tokens < LONG // 4  # its row stopped early; min_new_tokens would go on
    assert engine.cancelled == 1 and engine.served == 0


def test_sigterm_ends_open_requests_and_exits(model_dir):
    """SIGTERM while a 20000-token answer streams: the stream ends with a 503 event and the process exits."""
    import os
    import signal
    import subprocess
    import sys

    from trajvlm.serve.server import bind_socket

    with bind_socket("127.0.0.1", 0) as probe:
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root / "tokenizer"), str(root)])}
    cmd = [sys.executable, "-m", "trajvlm.cli", "serve", "--model", str(model_dir), "--served-model-name", NAME]
    cmd += ["--port", str(port), "--max-tokens-limit", "20000", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _healthy(url, proc), timeout=120)
        body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20000, "stream": True}
        events = []
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
                if len(events) == 3:
                    proc.send_signal(signal.SIGTERM)
        assert events[-1]["error"]["code"] == "shutting_down"
        # a 20000-token answer takes over a minute: it was stopped, and the server shut down in order (uvicorn
        # re-raises the signal once it is done, so the status is -SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()


def _healthy(url: str, proc) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the server exited ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_cli_says_when_the_port_is_in_use(model_dir, capsys):
    from trajvlm.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(model_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"error: port {port} on 127.0.0.1 is in use" in err and "Traceback" not in err


def test_only_json_posts_from_this_server_s_own_pages(loaded, server):
    body = json.dumps({"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):  # what a form or no-cors fetch can send
        headers = {} if kind is None else {"Content-Type": kind}
        got = httpx.post(f"{server}/v1/chat/completions", content=body, headers=headers, timeout=10)
        assert got.status_code == 415 and _error(got)["code"] == "unsupported_media_type"
    overlay = httpx.post(f"{server}/v1/trajectory_overlay", content=b"{}", headers={"Content-Type": "text/plain"})
    assert overlay.status_code == 415
    rebound = httpx.get(f"{server}/v1/models", headers={"Host": "attacker.example:8000"})  # DNS rebinding
    assert rebound.status_code == 421 and "not this server's name" in _error(rebound)["message"]
    foreign = httpx.post(
        f"{server}/v1/chat/completions", content=body, headers={**JSON_TYPE, "Origin": "http://attacker.example"}
    )
    assert foreign.status_code == 403 and _error(foreign)["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in foreign.headers
    own = httpx.post(f"{server}/v1/chat/completions", content=body, headers={**JSON_TYPE, "Origin": server}, timeout=30)
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
    for host in ("localhost", "[::1]:1234"):
        assert httpx.get(f"{server}/health", headers={"Host": host}).status_code == 200


def test_allowed_hosts_and_origins(loaded):
    app = make_app(loaded, None, allowed_hosts=("myhost.lan",), allowed_origins=("https://app.example",))
    with live_server(app) as url:
        assert httpx.get(f"{url}/health", headers={"Host": "myhost.lan:8000"}).status_code == 200
        assert httpx.get(f"{url}/health", headers={"Host": "other.lan"}).status_code == 421
        got = httpx.get(f"{url}/v1/models", headers={"Origin": "https://app.example"})
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == "https://app.example"
        preflight = httpx.options(
            f"{url}/v1/chat/completions",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204 and "POST" in preflight.headers["access-control-allow-methods"]
        assert "content-type" in preflight.headers["access-control-allow-headers"]
        assert httpx.get(f"{url}/v1/models", headers={"Origin": "https://other.example"}).status_code == 403
    with pytest.raises(ValueError, match="allowed origin 'app.example'"):
        ServeConfig(allowed_origins=("app.example",))


@pytest.fixture(scope="module")
def hidden_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hidden_media")
    write_clip(root / "clip.mp4")
    write_clip(root / ".private.mp4", seed=2)
    (root / ".cache").mkdir()
    write_clip(root / ".cache" / "inner.mp4", seed=3)
    (root / "sub").mkdir()
    write_clip(root / "sub" / "ok.mp4", seed=4)
    return root


def test_media_hides_dotfiles_and_never_names_the_root(loaded, hidden_root):
    with live_server(make_app(loaded, hidden_root)) as url:
        listed = httpx.get(f"{url}/v1/media").json()["data"]
        assert [m["name"] for m in listed] == ["clip.mp4", "sub/ok.mp4"]
        preview = httpx.get(url + listed[1]["preview"])
        assert preview.status_code == 200 and preview.content == (hidden_root / "sub" / "ok.mp4").read_bytes()
        plain = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for hidden in (hidden_root / ".private.mp4", hidden_root / ".cache" / "inner.mp4"):
            with pytest.raises(openai.PermissionDeniedError, match="hidden") as info:
                plain.chat.completions.create(model=NAME, messages=video_message(hidden.as_uri()), max_tokens=2)
            assert info.value.body["code"] == "hidden_media"
            assert httpx.get(f"{url}/v1/media/{hidden.relative_to(hidden_root)}").status_code == 403
        for outside in (f"file://{hidden_root}/../x.mp4", "file:///etc/passwd"):
            with pytest.raises(openai.PermissionDeniedError) as info:
                plain.chat.completions.create(model=NAME, messages=video_message(outside), max_tokens=2)
            assert str(hidden_root) not in info.value.body["message"].replace(outside.removeprefix("file://"), "")
        assert httpx.get(f"{url}/v1/media/..%2F..%2Fetc%2Fpasswd").status_code in (403, 404)


def test_slow_clients_are_cut_off(loaded):
    """Headers (or a body) dribbled a byte at a time get a 408 and a closed connection after --read-timeout."""
    app = make_app(loaded, None, read_timeout_s=1.0)
    with live_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        starts = [
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # headers never end
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{",  # the body never ends
        ]
        for start in starts:
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(start)
                sock.settimeout(0.2)
                got = b""
                for _ in range(100):  # 20 s of dribbling at most
                    try:
                        sock.sendall(b"a")
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not chunk:
                        break
                    got += chunk
            assert got.startswith(b"HTTP/1.1 408"), got[:200]
            assert json.loads(got.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "read_timeout"
        assert httpx.get(f"{url}/health").status_code == 200


def test_oversize_upload_413_reaches_a_closing_client(server):
    """urllib sends `Connection: close` and the whole body: it must read the 413, not a reset."""
    import urllib.error
    import urllib.request

    big = "data:video/mp4;base64," + "A" * (24 * 1024 * 1024)  # 24 MiB: more than the socket buffers hold
    data = json.dumps({"model": NAME, "messages": video_message(big)}).encode()
    request = urllib.request.Request(f"{server}/v1/chat/completions", data=data, headers=JSON_TYPE)
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
        assert info.value.code == 413
        assert json.loads(info.value.read())["error"]["code"] == "request_too_large"


def test_hostile_json_is_400_and_errors_keep_the_connection(loaded, server):
    deep = "[" * 1000 + "]" * 1000
    for text in (
        deep,
        json.dumps({"model": NAME, "messages": [{"role": "user", "content": json.loads("[" * 80 + "]" * 80)}]}),
    ):
        got = httpx.post(f"{server}/v1/chat/completions", content=text, headers=JSON_TYPE, timeout=10)
        assert got.status_code == 400 and "nested too deeply" in _error(got)["message"]
    surrogate = json.dumps({"model": NAME, "messages": [{"role": "user", "content": "Hi \ud800 there"}]})
    assert "\\ud800" in surrogate  # escaped in the JSON text, a lone surrogate once decoded
    got = httpx.post(f"{server}/v1/chat/completions", content=surrogate, headers=JSON_TYPE, timeout=10)
    assert got.status_code == 400 and "lone UTF-16 surrogate" in _error(got)["message"]
    assert _error(got)["param"] == "messages.0.content"

    app = make_app(loaded, None)

    @app.get("/fails")
    async def fails():  # a route with a bug: the one way to reach the unexpected-error path on purpose
        raise RuntimeError("kaput")

    with live_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /fails HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = _read_response(sock)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # the same connection
            second = _read_response(sock)
    assert first.startswith("HTTP/1.1 500")
    assert json.loads(first.split("\r\n\r\n", 1)[1])["error"]["message"] == "internal error: RuntimeError: kaput"
    assert second.startswith("HTTP/1.1 200") and json.loads(second.split("\r\n\r\n", 1)[1])["status"] == "ok"


def test_a_504_during_decoding_keeps_its_place_until_decoding_ends(loaded):
    """The decoder cannot be interrupted: a request that times out while its frames decode stays counted until
    they are decoded, so the server never admits more decoding work than its capacity."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4000, 4000), (20, 90, 160)).save(buf, format="PNG")  # small file, 16 M pixels to decode
    url = frames_url([buf.getvalue()] * 7)
    app = make_app(loaded, None, request_timeout_s=0.2, max_upload_mb=4.0)
    engine = app.state.engine
    with live_server(app) as base:
        got = httpx.post(
            f"{base}/v1/chat/completions", json={"model": NAME, "messages": video_message(url)}, timeout=30
        )
        assert got.status_code == 504
        assert engine.stats()["admitted"] == 1  # the frames are still being decoded
        _wait_for(lambda: engine.stats()["admitted"] == 0, timeout=60)


def test_cli_options_reach_the_config():
    import argparse

    from trajvlm.cli.serve import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--model", "m", "--max-tokens-limit", "64", "--default-max-tokens", "32", "--read-timeout", "3"]
        + ["--allowed-hosts", "a.lan, b.lan", "--allowed-origins", "https://app.example/"]
    )
    cfg = config_from_args(args)
    assert (cfg.max_tokens_limit, cfg.default_max_tokens, cfg.read_timeout_s) == (64, 32, 3.0)
    assert cfg.allowed_hosts == ("a.lan", "b.lan") and cfg.allowed_origins == ("https://app.example",)
