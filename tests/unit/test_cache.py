import sqlite3

import pytest
from structlog.testing import capture_logs

from llmrouter.cache import DecisionCache, cache_key, normalize

BASE = dict(table_fingerprint="t", prompt_version="p", model_sha256="m", settings={"mode": "scored"})


def test_normalisation():
    assert normalize("  Hello\n\tworld  ") == "Hello world"
    assert normalize("e\u0301") == normalize("\u00e9")


@pytest.mark.parametrize("field, value", [("table_fingerprint", "t2"), ("prompt_version", "p2"),
                                          ("model_sha256", "m2"), ("settings", {"mode": "generate"})])
def test_every_component_changes_the_key(field, value):
    assert cache_key("hi", **BASE) != cache_key("hi", **{**BASE, field: value})


def test_same_request_same_key():
    assert cache_key("hi  there", **BASE) == cache_key(" hi there ", **BASE)
    assert cache_key("hi", **BASE) != cache_key("ho", **BASE)


def test_values_are_json_not_pickle(tmp_path):
    c = DecisionCache(tmp_path)
    c.set("k", {"route": "code", "confidence": 0.5})
    assert c.get("k") == {"route": "code", "confidence": 0.5}
    c.close()
    rows = sqlite3.connect(tmp_path / "cache.db").execute("select key, value, mode from Cache").fetchall()
    assert len(rows) == 1 and isinstance(rows[0][1], bytes)
    assert b'"route"' in rows[0][1] and not rows[0][1].startswith(b"\x80")  # JSON, not a pickle


def test_corrupt_cache_degrades_with_a_warning(tmp_path):
    (tmp_path / "cache.db").write_bytes(b"this is not a sqlite database" * 100)
    with capture_logs() as logs:
        c = DecisionCache(tmp_path)
        assert c.get("k") is None
        c.set("k", {"route": "x"})
    assert not c.enabled
    assert any(e["event"] == "decision cache disabled" for e in logs)


def test_locked_cache_degrades(tmp_path):
    c = DecisionCache(tmp_path)
    c.set("a", {"route": "x"})
    other = sqlite3.connect(tmp_path / "cache.db", timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with capture_logs() as logs:
            c.set("b", {"route": "y"})
            assert c.get("a") is None
        assert any(e["event"] == "decision cache disabled" for e in logs)
    finally:
        other.rollback()
        other.close()


def test_full_cache_evicts_instead_of_failing(tmp_path):
    c = DecisionCache(tmp_path, size_mb=1)
    big = "x" * 50_000
    for i in range(100):
        c.set(f"k{i}", {"route": "code", "reason": big})
    assert c.enabled
    assert c.get("k99") is not None


def test_unwritable_directory_degrades(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with capture_logs():
        c = DecisionCache(blocker / "cache")
    assert not c.enabled and c.get("k") is None
