"""A route table file: TOML in, a validated Config out, and back (`to_toml`).

`RouteTable.fingerprint` changes whenever anything that could change a decision changes.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from llmrouter.config.base import Strict
from llmrouter.config.dashboard import DashboardSettings
from llmrouter.config.policy import PolicySettings, check_policy
from llmrouter.config.routes import RouteTable
from llmrouter.config.settings import DEFAULT_CONFIG, AuthSettings, FallbackPolicy, RouterSettings
from llmrouter.config.state import StateSettings
from llmrouter.config.targets import Target
from llmrouter.errors import ConfigError


class Config(Strict):
    """A whole route table file: router settings, targets and routes."""

    router: RouterSettings = Field(default_factory=RouterSettings)
    targets: dict[str, Target] = Field(default_factory=dict)
    table: RouteTable
    policy: PolicySettings = Field(default_factory=PolicySettings)  # rules, surfaces, caps...
    fallback: FallbackPolicy = Field(default_factory=FallbackPolicy)
    auth: AuthSettings | None = None  # [auth]: the server's API keys
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)  # [dashboard]: /dashboard, /v1/stats
    state: StateSettings | None = None  # [state]: state shared by processes and hosts (Redis)
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
        problems = check_policy(self.policy, self.table)
        baseline = self.dashboard.baseline_route
        if baseline and baseline not in self.table:
            problems.append(f"dashboard.baseline_route {baseline!r} is not a route of the table "
                            f"(routes: {', '.join(self.table.names)})")
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
        auth = data.pop("auth", None)
        dashboard = data.pop("dashboard", {}) or {}
        state = data.pop("state", None)
        if data:
            raise ConfigError(
                f"{path or 'config'}: unknown top-level key(s): {', '.join(sorted(data))} "
                "(expected [router], [targets.NAME], [[routes]], [fallback], [auth], [dashboard], [state], or a "
                "policy section: "
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
                auth=auth,
                dashboard=dashboard,
                state=state,
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
        if self.auth is not None:
            out["auth"] = self.auth.model_dump(mode="json")
        dashboard = self.dashboard.model_dump(mode="json", exclude_defaults=True)
        if dashboard:
            out["dashboard"] = dashboard
        if self.state is not None:
            out["state"] = self.state.model_dump(mode="json", exclude_defaults=True)
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
