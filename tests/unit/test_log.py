import io
import json
import sys

from llmrouter import log


def test_secrets_are_redacted_and_lines_follow_the_current_stderr(monkeypatch):
    log.configure(fmt="json", level="info")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.get_logger().info("call", api_key="sk-abcdefghijklmnop", note="key sk-abcdefghijklmnop here",
                          headers={"Authorization": "Bearer abcdefghijklmnop"}, api_key_env="OPENAI_API_KEY")
    line = json.loads(first.getvalue().splitlines()[0])
    assert line["api_key"] == "***" and line["note"] == "key *** here"
    assert line["headers"] == {"Authorization": "***"} and line["api_key_env"] == "OPENAI_API_KEY"
    assert "sk-abcdefghijklmnop" not in first.getvalue()
    first.close()  # a swapped-out stream must not break later lines
    monkeypatch.setattr(sys, "stderr", second)
    log.get_logger().info("after")
    event = json.loads(second.getvalue().splitlines()[0])
    assert event["event"] == "after"
    log.configure(fmt="json", level="warning")


def test_redact():
    out = log.redact({"api_key": "x", "password": "p", "api_key_env": "OPENAI_API_KEY",
                      "text": "use sk-ant-abcdefghijkl now", "n_tokens": 5})
    assert out == {"api_key": "***", "password": "***", "api_key_env": "OPENAI_API_KEY",
                   "text": "use *** now", "n_tokens": 5}
