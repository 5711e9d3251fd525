"""The package's shape: its public API, a cheap import, and what the runtime must not pull in."""

import subprocess
import sys

import llmrouter


def test_every_public_name_resolves_and_nothing_public_is_missing():
    for name in llmrouter.__all__:
        assert getattr(llmrouter, name) is not None, name
    assert sorted(llmrouter.__all__) == llmrouter.__all__
    assert llmrouter.Router.__module__ == "llmrouter.router"


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_importing_llmrouter_loads_neither_llama_cpp_nor_the_tooling():
    mods = _imported_after("import llmrouter")
    assert "llama_cpp" not in mods and "llmrouter.router" not in mods


def test_routing_never_imports_tuning_plotting_or_test_tooling():
    mods = _imported_after("import llmrouter.router, llmrouter.server, llmrouter.cli.route")
    for heavy in ("sklearn", "scipy", "matplotlib", "llmrouter.quality", "llmrouter.testing"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in mods), heavy
