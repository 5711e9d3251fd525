"""Shared fixtures: the real default router model (loaded once), temp caches, route tables."""

from __future__ import annotations

import pytest

from llmrouter import log as logmod
from llmrouter.config import Config

logmod.configure(fmt="json", level="warning")


@pytest.fixture(autouse=True)
def _logging_reset():
    """Every test starts with all levels on: CLI commands run in-process reconfigure logging
    (e.g. level=error), which would otherwise hide events from later tests' capture_logs()."""
    logmod.configure(fmt="json", level="debug")
    yield

from fixtures_providers import *  # noqa: E402,F401,F403  emulator, fleets, server runner


@pytest.fixture(scope="session")
def default_config() -> Config:
    return Config.load()


@pytest.fixture(scope="session")
def model_router(tmp_path_factory):
    """A Router on the real default model, decision cache off (tests that cache make their own)."""
    from llmrouter.router import Router

    router = Router.from_config(cache=False)
    yield router
    router.close()


@pytest.fixture
def cached_router(model_router, tmp_path):
    """The session's model and decider with a fresh decision cache in tmp_path."""
    from llmrouter.cache import DecisionCache
    from llmrouter.router import Router

    cfg = model_router.config.with_router(cache=True, cache_dir=str(tmp_path / "decisions"))
    router = Router(cfg, decider=model_router.decider, cache=DecisionCache(tmp_path / "decisions"))
    router.model_sha256 = model_router.model_sha256
    yield router
    router.close()
