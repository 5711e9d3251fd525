"""Route tables as data: everything a TOML route table can say, validated, at the bottom of the
package (it imports only errors, paths and the registry of kinds).

    base.py      Strict: frozen models that refuse unknown keys
    routes.py    Route, RouteTable
    targets.py   Target (its provider kind, timeouts, retries, prices and what an answer costs)
    settings.py  RouterSettings ([router], [router.remote]), FallbackPolicy ([fallback])
    policy.py    the policy sections: [[rules]], [tiers], [surfaces], [escalation], [budgets]...
    dashboard.py DashboardSettings ([dashboard]: the baseline route, request text, the stats file)
    state.py     StateSettings ([state]: Redis shared by processes and hosts)
    file.py      Config: a whole table, from and to TOML
"""

from llmrouter.config.dashboard import DashboardSettings
from llmrouter.config.file import Config, format_errors
from llmrouter.config.policy import PolicySettings
from llmrouter.config.routes import ROUTE_NAME, Route, RouteTable
from llmrouter.config.settings import DEFAULT_CONFIG, AuthSettings, FallbackPolicy, RemoteDeciderSettings, RouterSettings
from llmrouter.config.state import StateSettings
from llmrouter.config.targets import Target

__all__ = [
    "AuthSettings",
    "DEFAULT_CONFIG",
    "DashboardSettings",
    "ROUTE_NAME",
    "Config",
    "FallbackPolicy",
    "PolicySettings",
    "RemoteDeciderSettings",
    "Route",
    "RouteTable",
    "RouterSettings",
    "StateSettings",
    "Target",
    "format_errors",
]
