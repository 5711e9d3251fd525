"""Shared fixtures: a temporary llmrouter home for every test, the real default router model
(loaded once), route tables.

Every test gets its own empty LLMROUTER_HOME (decision cache, KV prefixes, indexes, hash memos,
features: nothing is read from or written to the user's ~/.cache/llmrouter). Only the model
file is shared, and only with tests marked `model`: an unmarked test that needs the model fails,
so `pytest -m "not model"` runs where no model was ever pulled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrouter import log as logmod
from llmrouter.config import Config
from llmrouter.paths import user_dir

logmod.configure(fmt="json", level="warning")
MODEL_FILES = sorted(user_dir("models").glob("*.gguf"))  # the user's pulled models, found before any test runs


def make_home(folder: Path, with_model: bool) -> Path:
    """An llmrouter home in `folder`; with the pulled model files linked in when asked."""
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    for f in MODEL_FILES if with_model else ():
        (models / f.name).symlink_to(f)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The home of session-wide fixtures (the shared model router)."""
    with pytest.MonkeyPatch.context() as mp:
        home = make_home(tmp_path_factory.mktemp("session-home"), with_model=True)
        mp.setenv("LLMROUTER_HOME", str(home))
        yield home


@pytest.fixture(autouse=True)
def _test_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own home; the model only for tests marked `model`."""
    home = make_home(tmp_path_factory.mktemp("home"), request.node.get_closest_marker("model") is not None)
    monkeypatch.setenv("LLMROUTER_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _logging_reset():
    """Every test starts with all levels on: CLI commands run in-process reconfigure logging
    (e.g. level=error), which would otherwise hide events from later tests' capture_logs()."""
    logmod.configure(fmt="json", level="debug")
    yield

from fixtures_providers import *  # noqa: E402,F401,F403  emulator, fleets, server runner
from fixtures_redis import *  # noqa: E402,F401,F403  a real redis-server


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
def model_only(model_router):
    """The session's model and decider with the cascade off: every decision is the model's."""
    from llmrouter.router import Router

    return Router(model_router.config.with_router(cascade=False, cache=False), decider=model_router.decider)


@pytest.fixture
def cached_router(model_router, tmp_path):
    """The session's model and decider with a fresh decision cache in tmp_path."""
    from llmrouter.cache import DecisionCache
    from llmrouter.router import Router

    cfg = model_router.config.with_router(cache=True, cache_dir=str(tmp_path / "decisions"), cascade=False)
    router = Router(cfg, decider=model_router.decider, cache=DecisionCache(tmp_path / "decisions"))
    router.model_sha256 = model_router.model_sha256
    yield router
    router.close()
