"""Where llmrouter's files are: the user's cache folders, and the files shipped beside the code."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def user_dir(kind: str) -> Path:
    """Where llmrouter keeps `kind` ("models", "decisions", "index"...): $LLMROUTER_HOME or ~/.cache."""
    base = os.environ.get("LLMROUTER_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmrouter"
    )
    return Path(base) / kind


def resource_path(name: str) -> Path:
    """`prompts`, `models` or `bench`: inside the wheel (llmrouter/_data/NAME) or at the checkout's root."""
    for candidate in (PACKAGE_DIR / "_data" / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"llmrouter's {name}/ folder is missing from this installation")
