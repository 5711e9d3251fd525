"""`[state]`: where processes and hosts share spend, caps, rate limits, stickiness and breakers."""

from __future__ import annotations

import os
import re

from pydantic import Field, model_validator

from llmrouter.config.base import Strict
from llmrouter.errors import ConfigError

_SCHEMES = ("redis://", "rediss://", "unix://")


class StateSettings(Strict):
    """`[state] url = "redis://HOST:6379/0"` (Redis or Valkey); or `url_env`, the environment
    variable that holds it (keeps a password out of the table)."""

    url: str = ""
    url_env: str = ""
    prefix: str = Field("llmr", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")  # every key starts with it
    # per Redis call; past it the process goes local until the next probe. Not much lower: on a
    # machine whose cores are all busy, a loopback call can take tens of ms
    timeout_ms: float = Field(250.0, gt=0, le=5000)
    # how old a value read from Redis may be reused locally: escalation windows, sessions and
    # breakers; and spend and rate counters while they are far from their limit (local_below)
    read_ttl_s: float = Field(0.1, ge=0, le=10)
    # a spend or rate counter read within read_ttl_s answers a check here while it (with this
    # process's own adds since) is below this share of its limit; from there every check asks
    # Redis, so a cap is overshot only by the requests in flight when it is reached (0: always ask)
    local_below: float = Field(0.5, ge=0, lt=1)
    # how long a session this process served answers its next turn here (None: read_ttl_s). Raise
    # it when the proxy keeps a session on one process (affinity): its turns then read no Redis
    session_read_ttl_s: float | None = Field(None, ge=0, le=86400)
    probe_s: float = Field(2.0, gt=0, le=600)  # while Redis is down: how often to try it again
    decision_cache: bool = False  # share the decision cache too
    decision_cache_ttl_s: float = Field(86400.0, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> StateSettings:
        if bool(self.url) == bool(self.url_env):
            raise ValueError("[state] needs exactly one of url = \"redis://HOST:6379/0\" or url_env = \"VAR\"")
        if self.url and not self.url.startswith(_SCHEMES):
            raise ValueError(f"[state] url must start with {', '.join(_SCHEMES)}")
        return self

    def resolved_url(self) -> str:
        """The URL to connect to (read from `url_env` when set)."""
        if not self.url_env:
            return self.url
        url = os.environ.get(self.url_env, "")
        if not url.startswith(_SCHEMES):
            raise ConfigError(f"[state] url_env: ${self.url_env} is {'not set' if not url else 'not a redis:// URL'}")
        return url

    def safe_url(self) -> str:
        """The URL as a log may show it: no password."""
        return redact(self.url or f"${self.url_env}")


def redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)
