"""Route tables: a TOML file in, a validated Config out (router settings, targets, routes).

A route table is data: `Config.load(path)` reads it, `Config.to_toml()` writes it back, and
`RouteTable.fingerprint` changes whenever anything that could change a decision changes.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmrouter.errors import ConfigError
from llmrouter.policy.settings import PolicySettings, check_policy

ROUTE_NAME = r"^[a-z][a-z0-9_\-]{0,39}$"
DEFAULT_CONFIG = Path(__file__).with_name("default_routes.toml")


def user_dir(kind: str) -> Path:
    """Where llmrouter keeps `kind` ("models", "decisions", "index"...): $LLMROUTER_HOME or ~/.cache."""
    base = os.environ.get("LLMROUTER_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmrouter"
    )
    return Path(base) / kind


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RemoteDeciderSettings(_Strict):
    """Decide on a serving engine instead of in-process (llama.cpp server, vLLM, Ollama...)."""

    base_url: str = Field(min_length=1, description="an OpenAI-compatible /v1 URL")
    model: str = Field(min_length=1)
    api_key_env: str = ""
    timeout_s: float = Field(5.0, gt=0)
    logprobs: bool = True  # ask for top logprobs at the route token: the decision's confidence


class RouterSettings(_Strict):
    """How the local router model runs."""

    model: str = "smollm2-135m"
    prompt: str = "router-v1"
    # scored: the model's route probabilities; generate: Outlines JSON; fitted: a head over the
    # model's hidden states (`head`, made by `llmrouter tune`); combined: the head, or the model's
    # calibrated scores where the head is unsure
    mode: Literal["scored", "generate", "fitted", "combined"] = "scored"
    head: str = ""  # a fitted head (.npz) made by `llmrouter tune`, relative to the route table
    threads: int = Field(1, ge=1, le=256)
    threads_batch: int | None = Field(None, ge=1, le=256)
    context_size: int = Field(2048, ge=256, le=131072)
    batch_size: int = Field(512, ge=8, le=8192)
    gpu_layers: int = Field(0, ge=-1)
    max_request_tokens: int = Field(256, ge=16, le=32768)
    examples_per_route: int = Field(2, ge=0, le=50)
    cache: bool = True
    cache_dir: str = ""
    cache_size_mb: int = Field(256, ge=1)
    remote: RemoteDeciderSettings | None = None  # [router.remote]: decide on a serving engine

    def decider_settings(self) -> dict[str, Any]:
        """The settings that change a decision (part of every cache key)."""
        return {
            "mode": self.mode,
            "max_request_tokens": self.max_request_tokens,
            "examples_per_route": self.examples_per_route,
            "head": self.head,
        }

    def head_path(self, config_path: str = "") -> Path | None:
        """The fitted head's file: relative to the route table's folder (or the package's)."""
        if not self.head:
            return None
        p = Path(os.path.expanduser(self.head))
        if p.is_absolute():
            return p
        base = Path(config_path).parent if config_path else DEFAULT_CONFIG.parent
        if not (base / p).is_file() and (DEFAULT_CONFIG.parent / p).is_file():
            return DEFAULT_CONFIG.parent / p  # a copy of the packaged table keeps the packaged head
        return base / p

    @property
    def cache_path(self) -> Path:
        return Path(os.path.expanduser(self.cache_dir)) if self.cache_dir else user_dir("decisions")


class Target(_Strict):
    """A model llmrouter can send a request to."""

    name: str = ""
    provider: Literal["openai", "anthropic", "local"] = "openai"
    model: str
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = Field(60.0, gt=0)
    context_window: int = Field(8192, ge=256)
    vision: bool = False
    input_price: float = Field(0.0, ge=0, description="USD per million input tokens")
    output_price: float = Field(0.0, ge=0, description="USD per million output tokens")
    latency_ms: float = Field(0.0, ge=0, description="typical time to answer, for break-even math")

    @model_validator(mode="after")
    def _url_for_remote(self) -> Target:
        if self.provider != "local" and not self.base_url:
            raise ValueError(f"target {self.name!r}: provider {self.provider!r} needs base_url")
        return self


class Route(_Strict):
    """A destination the router can choose, described for the router model."""

    name: str = Field(pattern=ROUTE_NAME)
    description: str = Field(min_length=1)
    examples: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    tier: str = ""  # its cost tier ([tiers] order): surfaces' floors and escalation move along tiers
    escalate_to: str = ""  # the route one tier up (default: the first route of the next tier)

    @field_validator("description")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("description is blank")
        return v.strip()


class RouteTable(_Strict):
    """The routes and the default route; `names` is the enum the router may answer with."""

    routes: tuple[Route, ...]
    default_route: str

    @model_validator(mode="after")
    def _consistent(self) -> RouteTable:
        if not self.routes:
            raise ValueError("the route table is empty: add at least one [[routes]] entry")
        seen: set[str] = set()
        for r in self.routes:
            if r.name in seen:
                raise ValueError(f"duplicate route name {r.name!r}")
            seen.add(r.name)
        if self.default_route not in seen:
            raise ValueError(
                f"default_route {self.default_route!r} is not in the table "
                f"(routes: {', '.join(sorted(seen))})"
            )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes)

    def __getitem__(self, name: str) -> Route:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @cached_property
    def fingerprint(self) -> str:
        # tiers steer the policy after the model, not the model: they stay out of the cache key
        data = self.model_dump(mode="json", exclude={"routes": {"__all__": {"tier", "escalate_to"}}})
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @cached_property
    def route_enum(self) -> type[enum.Enum]:
        """An Enum of the route names: Outlines' output type and the validator of decisions."""
        return enum.Enum("RouteName", {n: n for n in self.names}, type=str)  # type: ignore[return-value]


class FallbackSettings(_Strict):
    """`[fallback]`: how hard a request is tried before it fails (fallback.FallbackPolicy)."""

    deadline_s: float = Field(60.0, gt=0)  # the whole request: retries and fallbacks included
    max_retries: int = Field(2, ge=0)  # per target, per request; a target's own `max_retries` wins
    backoff_base_s: float = Field(0.2, ge=0)
    backoff_cap_s: float = Field(2.0, ge=0)
    retry_after_cap_s: float = Field(10.0, ge=0)  # a longer Retry-After moves on to the next target
    stream_idle_timeout_s: float = Field(30.0, gt=0)
    breaker_failures: int = Field(5, ge=1)  # failures in a row that open a target's breaker
    breaker_cooldown_s: float = Field(30.0, gt=0)
    # longest wait for the busy router model before the default route; unset: always wait
    # (`llmrouter serve` then uses 5 s)
    decide_wait_s: float | None = Field(None, ge=0)

    def policy(self, **overrides: Any):  # type: ignore[no-untyped-def]
        """The FallbackPolicy these settings describe; `overrides` that are not None win."""
        from llmrouter.fallback import FallbackPolicy

        values = {**self.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        return FallbackPolicy(**values)


class Config(_Strict):
    """A whole route table file: router settings, targets and routes."""

    router: RouterSettings = Field(default_factory=RouterSettings)
    targets: dict[str, Target] = Field(default_factory=dict)
    table: RouteTable
    policy: PolicySettings = Field(default_factory=PolicySettings)  # rules, surfaces, caps...
    fallback: FallbackSettings = Field(default_factory=FallbackSettings)
    path: str = ""

    @model_validator(mode="after")
    def _targets_exist(self) -> Config:
        for route in self.table.routes:
            for t in route.targets:
                if t not in self.targets:
                    known = ", ".join(sorted(self.targets)) or "none defined"
                    raise ValueError(
                        f"route {route.name!r} names target {t!r}, which is not defined "
                        f"under [targets] (known: {known})"
                    )
        problems = check_policy(self)
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str = "") -> Config:
        data = dict(data)
        router = dict(data.pop("router", {}) or {})
        default_route = router.pop("default_route", None)
        routes = data.pop("routes", [])
        targets = {
            name: {"name": name, **(body or {})} for name, body in (data.pop("targets", {}) or {}).items()
        }
        policy = {k: data.pop(k) for k in PolicySettings.SECTIONS if k in data}
        fallback = data.pop("fallback", {}) or {}
        if data:
            raise ConfigError(
                f"{path or 'config'}: unknown top-level key(s): {', '.join(sorted(data))} "
                "(expected [router], [targets.NAME], [[routes]], [fallback], or a policy section: "
                f"{', '.join(PolicySettings.SECTIONS)})"
            )
        if default_route is None:
            default_route = routes[0].get("name", "") if routes and isinstance(routes[0], dict) else ""
        try:
            return cls(
                router=router,
                targets=targets,
                table={"routes": routes, "default_route": default_route},
                policy=policy,
                fallback=fallback,
                path=path,
            )
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, path)) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Config:
        """Read and validate a TOML route table; None loads the packaged default table."""
        p = Path(path) if path is not None else DEFAULT_CONFIG
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"no route table at {p}", hint="check the path, or omit --config to use the default table") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {p}: {exc.strerror}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{p} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from None
        return cls.from_dict(data, path=str(p))

    def to_dict(self) -> dict[str, Any]:
        router = self.router.model_dump(mode="json", exclude_defaults=True)
        router["default_route"] = self.table.default_route
        out: dict[str, Any] = {"router": router}
        if self.targets:
            out["targets"] = {
                n: t.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
                for n, t in self.targets.items()
            }
        out["routes"] = [r.model_dump(mode="json", exclude_defaults=True) for r in self.table.routes]
        out.update(self.policy.to_dict())
        fallback = self.fallback.model_dump(mode="json", exclude_defaults=True)
        if fallback:
            out["fallback"] = fallback
        return out

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def with_router(self, **changes: Any) -> Config:
        """A copy with some router settings changed (validated)."""
        try:
            router = RouterSettings(**{**self.router.model_dump(), **changes})
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, self.path)) from None
        return self.model_copy(update={"router": router})


def format_errors(exc: ValidationError, path: str = "") -> str:
    """One line per problem, each saying where it is and what is wrong."""
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err.get("loc", ()):
            if part in ("table", "policy"):
                continue
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"  - {loc}: {msg}" if loc else f"  - {msg}")
    where = path or "route table"
    return f"{where} has {len(lines)} problem(s):\n" + "\n".join(lines)
