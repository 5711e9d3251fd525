"""`[dashboard]`: what the server's dashboard (/dashboard, /v1/stats) compares against, keeps and shows.

    baseline_route   savings are also shown against sending everything to this route ("" : only
                     against the most expensive route)
    request_text     keep each request's text (first 200 characters) in the recent-decisions table;
                     off by default: request text never reaches the page or the stats file otherwise
    stats_file       the SQLite file of the aggregates ("": stats.sqlite beside the decision cache)
    retention_days   per-minute buckets older than this are rolled up into one all-time bucket
    recent           how many recent decisions the table keeps
    reports          folders searched for the latest eval and bench reports (relative to the route
                     table's folder; default: eval-report and bench/results in the working directory)
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from llmrouter.config.base import Strict

DEFAULT_REPORTS = ("eval-report", "bench/results")


class DashboardSettings(Strict):
    baseline_route: str = ""
    request_text: bool = False
    stats_file: str = ""
    retention_days: float = Field(30.0, gt=0)
    recent: int = Field(200, ge=1, le=10_000)
    reports: tuple[str, ...] = DEFAULT_REPORTS

    def stats_path(self, cache_dir: Path, config_path: str = "") -> Path:
        """The aggregates' SQLite file: `stats_file` (relative to the table), else beside the cache."""
        if not self.stats_file:
            return cache_dir.parent / "stats.sqlite"
        return _resolve(self.stats_file, config_path)

    def report_dirs(self, config_path: str = "") -> list[Path]:
        """The report folders; defaults are relative to the working directory, others to the table."""
        return [Path(r) if r in DEFAULT_REPORTS else _resolve(r, config_path) for r in self.reports]


def _resolve(value: str, config_path: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() or not config_path else Path(config_path).parent / p
