"""Outlines-constrained generation on llmrouter's warm llama.cpp context.

Outlines' own llama.cpp wrapper resets the model after every call, so the whole prompt would be
evaluated again each time. Here the Outlines index and logits processor are built once per
(model, output type), the index is kept on disk (Outlines has no index cache of its own), and the
processor is handed to `Llama.create_completion`, which reuses the cached prompt prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from llmrouter.config import RouteTable
from llmrouter.errors import DeciderError
from llmrouter.paths import user_dir
from llmrouter.validate import route_output_type

# A reason is one short line; no quote or backslash, so it drops into JSON as it is.
REASON_REGEX = r'[^"\\\n]+'
REASON_LEAD = "\nReason: "


def index_dir() -> Path:
    return user_dir("index")


class ConstrainedGenerator:
    """Generates under an Outlines regex or JSON schema from a token prompt, on a shared Llama."""

    def __init__(self, llm: Any, model_id: str, table: RouteTable) -> None:
        import outlines
        from outlines.backends.outlines_core import OutlinesCoreBackend

        self.llm = llm
        self.model_id = model_id
        self.table = table
        self.model = outlines.from_llamacpp(llm)
        self._backend = OutlinesCoreBackend(self.model)
        self._processors: dict[str, Any] = {}
        schema = json.dumps(route_output_type(table).model_json_schema())
        from outlines_core.json_schema import build_regex_from_schema

        self.route_regex = build_regex_from_schema(schema, "")
        self.route_type = route_output_type(table)

    def processor(self, regex: str) -> Any:
        """The logits processor for `regex`, its index loaded from disk when built before."""
        if regex not in self._processors:
            from outlines.backends.outlines_core import OutlinesCoreLogitsProcessor

            index = load_or_build_index(regex, self._backend.vocabulary, self.model_id)
            self._processors[regex] = OutlinesCoreLogitsProcessor(index, "numpy")
        proc = self._processors[regex]
        proc.reset()
        return proc

    def _complete(self, tokens: list[int], regex: str, max_tokens: int) -> str:
        from llama_cpp import LogitsProcessorList

        out = self.llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=0.0,
            logits_processor=LogitsProcessorList([self.processor(regex)]),
        )
        return out["choices"][0]["text"]

    def generate_route(self, tokens: list[int]) -> str:
        """Generate `{"route": ...}` JSON and return the route (validated against the enum)."""
        text = self._complete(tokens, self.route_regex, max_tokens=48)
        try:
            return self.route_type.model_validate_json(text).route.value  # type: ignore[attr-defined]
        except ValueError as exc:
            raise DeciderError(f"generated decision is not valid JSON for the table: {text!r}") from exc

    def reason(self, tokens: list[int], max_tokens: int = 48) -> str:
        """A one-line reason after the decided route's tokens."""
        lead = self.llm.tokenize(REASON_LEAD.encode(), add_bos=False, special=False)
        text = self._complete(tokens + lead, REASON_REGEX, max_tokens=max_tokens)
        return " ".join(text.split())


def load_or_build_index(regex: str, vocabulary: Any, model_id: str) -> Any:
    """An outlines_core Index, cached on disk by model, regex and outlines_core version, as
    outlines_core's own binary form (Index.from_binary: data, never pickle)."""
    import outlines_core
    from outlines_core import Index

    version = getattr(outlines_core, "__version__", "?")
    key = hashlib.sha256(f"{model_id}\0{regex}\0{version}".encode()).hexdigest()[:24]
    path = index_dir() / f"{key}.bin"
    if path.is_file():
        try:
            return Index.from_binary(path.read_bytes())
        except Exception:  # damaged or from another version: build it again
            path.unlink(missing_ok=True)
    index = Index(regex, vocabulary)
    data = _binary(index)
    if data is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache we cannot write only costs the next process the build
    return index


def _binary(index: Any) -> bytes | None:
    """The Index's serialized form: outlines_core reduces it to (Index.from_binary, (bytes,))."""
    reduced = index.__reduce__()
    fn, args = reduced[0], reduced[1]
    if getattr(fn, "__name__", "") == "from_binary" and len(args) == 1 and isinstance(args[0], bytes):
        return args[0]
    return None


__all__ = ["ConstrainedGenerator", "load_or_build_index"]
