"""Find the files shipped beside the code (prompts/, models/), installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """`prompts` or `models`: inside the wheel (llmrouter/_data/NAME) or at the repository root."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"llmrouter's {name}/ folder is missing from this installation")
