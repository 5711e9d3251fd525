"""The Outlines index cache: outlines_core's own binary form on disk, never pickle (no model)."""

from __future__ import annotations

from outlines_core import Index, Vocabulary

from llmrouter.llamacpp.constrained import index_dir, load_or_build_index


def test_an_index_is_stored_as_data_and_read_back():
    vocab = Vocabulary(3, {"a": [1], "b": [2]})
    built = load_or_build_index("a+b", vocab, "m1")
    files = list(index_dir().glob("*.bin"))
    assert len(files) == 1 and not files[0].read_bytes().startswith(b"\x80")  # not a pickle stream
    again = load_or_build_index("a+b", vocab, "m1")
    assert again.get_transitions() == built.get_transitions()
    assert again.get_final_states() == built.get_final_states()


def test_a_damaged_file_is_rebuilt():
    vocab = Vocabulary(3, {"a": [1], "b": [2]})
    load_or_build_index("b+a", vocab, "m2")
    for f in index_dir().glob("*.bin"):
        f.write_bytes(b"garbage")
    rebuilt = load_or_build_index("b+a", vocab, "m2")
    assert rebuilt.get_transitions() == Index("b+a", vocab).get_transitions()
