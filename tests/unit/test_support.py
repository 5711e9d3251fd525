"""The hinge beyond the fit rows' support (head/support.py, head/textstats.py): rows inside it are
untouched, far ones lose confidence without changing their route, and it survives a save (no model)."""

from __future__ import annotations

import base64
import random
from dataclasses import replace

import numpy as np

from llmrouter.head.cheap import CheapStage
from llmrouter.head.fitted import FittedHead
from llmrouter.head.members import Chars
from llmrouter.head.support import Support
from llmrouter.head.textstats import NAMES, latin_ngrams, lower_bound, text_stats

ROUTES = ("code", "math", "chat")
SHA, KEY = "ab" * 32, "k" * 16
PROSE = [
    "Write a short poem about the sea at night.", "How do I reverse a list in Python?",
    "Summarise the following article about climate policy in three sentences.",
    "What is the derivative of x squared plus three x?", "Tell me a joke about cats.",
    "Explain the difference between a process and a thread.", "Plan a weekend trip to the mountains.",
    "Translate 'good morning' into French.", "Which is larger, 3/4 or 5/7?",
    "Give me three ideas for a birthday party.", "What year did the second world war end?",
    "Sort these numbers: 4, 9, 1, 7.", "Write a function that checks whether a word is a palindrome.",
    "How are you today?", "Classify this review as positive or negative: the food was cold.",
] * 2


def blob(seed: int = 0) -> str:
    rng = random.Random(seed)
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(180))).decode()


def hexdump(seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n".join(f"{i * 16:08x}  " + " ".join(f"{rng.getrandbits(8):02x}" for _ in range(16)) for i in range(8))


def confident(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet([0.3, 0.3, 0.3], n)


def test_a_short_text_cannot_look_extreme_by_chance_a_long_one_can():
    assert lower_bound(0, 0) == 0.0
    assert lower_bound(2, 5) < 0.15 < lower_bound(200, 500)  # 40% of 5 chars vs 40% of 500
    digits = NAMES.index("digits")
    assert text_stats("2+2", frozenset())[digits] < text_stats(hexdump(), frozenset())[digits]


def test_words_in_other_scripts_are_no_evidence_of_unknown_ngrams():
    assert latin_ngrams("请为这篇文章选择一个适当的标题") == []
    unknown = NAMES.index("unknown")
    assert text_stats("请为这篇文章选择一个适当的标题", frozenset())[unknown] == 0.0
    assert text_stats("Kesämökin laiturilla istuu vanha mies", frozenset())[unknown] > 0.5


def test_the_hinge_leaves_the_fit_rows_unchanged():
    sup = Support.fit(PROSE)
    p = confident(len(PROSE))
    assert (sup.weight(PROSE) == 0).all()
    assert np.array_equal(sup.soften(p, PROSE), p)


def test_far_texts_lose_confidence_but_keep_their_route():
    sup = Support.fit(PROSE)
    far = [blob(1), hexdump(2), "\n".join(",".join(f"{v:.3f}" for v in range(6)) for _ in range(8))]
    p = confident(len(far), seed=3)
    soft = sup.soften(p, far)
    assert (sup.weight(far) > 0).all() and (sup.weight(far) < 1).all()
    assert (soft.max(1) < p.max(1)).all()
    assert (soft.argmax(1) == p.argmax(1)).all() and np.allclose(soft.sum(1), 1)


def test_a_head_with_a_support_round_trips_and_its_cheap_stage_softens_too(tmp_path):
    rng = np.random.default_rng(0)
    texts = np.array(PROSE + [blob(9)], dtype=str)
    y = rng.integers(0, 3, len(texts))
    x = rng.normal(0, 1, (len(texts), 4))
    feats = {"mean": x, "last": x, "text": texts, "logp": np.log(np.full((len(texts), 3), 1 / 3))}
    h = FittedHead.calibration(feats["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    h = h.with_head(feats, y, blocks=("mean", "last"), C=1.0)
    h = replace(h, cheap=CheapStage(ROUTES, Chars.fit({"text": texts[:-1]}, y[:-1], 3, C=1.0), 1.0, 0.99))
    h = h.with_support(Support.fit([str(t) for t in texts[:-1]]))
    back = FittedHead.load(h.save(tmp_path / "h.head.npz"))
    assert back.support is not None and back.cheap is not None and back.cheap.support is not None
    assert back.support.vocabulary == h.support.vocabulary
    assert np.allclose(back.proba(feats, "fitted")[0], h.proba(feats, "fitted")[0], atol=1e-5)
    plain, _ = back.with_support(None).cheap.read([blob(9)])
    soft, _ = back.cheap.read([blob(9)])
    assert soft.max() < plain.max()


def test_the_shipped_head_leaves_every_package_example_untouched():
    from llmrouter.paths import PACKAGE_DIR
    from llmrouter.quality import evaluate as ev
    from llmrouter.quality import observed as obs

    head = FittedHead.load(PACKAGE_DIR / "default_routes.head.npz")
    assert head.support is not None and head.cheap is not None and head.cheap.support is head.support
    texts = [r.text for r in ev.load_records(obs.PACKAGE_EXAMPLES)]
    assert (head.support.weight(texts) == 0).all()
    assert (head.support.weight([blob(0), hexdump(0)]) > 0).all()
