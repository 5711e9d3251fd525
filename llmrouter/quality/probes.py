"""Far-out-of-distribution probes: requests unlike anything a route table is about (random tokens,
base64 and hex blobs, log dumps, keyboard mash, long text in languages the examples do not use).

No route is right for them, so a head should be unsure of them: `bench/calibration.py` measures
whether the out-of-distribution signal (head/familiarity.py) makes it so. Written for the package,
generated from a seed: no data file, nothing taken from any evaluation set.
"""

from __future__ import annotations

import base64
import random
import string

KINDS = ("tokens", "base64", "hex", "log", "mash", "foreign", "numbers")

# Sentences in languages the package's examples never use, joined into long paragraphs.
FOREIGN = (
    "Eilen satoi koko päivän, joten jäimme kotiin ja joimme teetä ikkunan ääressä.",
    "Kesämökin laiturilla istuu vanha mies, joka katselee järven tyyntä pintaa.",
    "Pada musim hujan jalan di desa itu selalu becek dan penuh lumpur.",
    "Nenek saya menanam cabai, tomat, dan daun bawang di halaman belakang rumah.",
    "Wczoraj wieczorem sąsiedzi urządzili grilla i zaprosili całą ulicę.",
    "Tramwaj numer osiem jeździ przez stare miasto aż do dworca głównego.",
    "Dün akşam balkonda oturup martıların sesini dinledik.",
    "Köyün meydanındaki çınar ağacı yüz yıldan daha yaşlıdır.",
    "Tối qua cả nhà quây quần bên mâm cơm và kể chuyện cũ.",
    "Con đường ven sông rợp bóng cây phượng vào mùa hè.",
    "Hier blies ein kalter Wind über die Felder hinter dem alten Bauernhof.",
    "Sa Lunes ay pupunta kami sa palengke para bumili ng isda at gulay.",
)


def far_probes(per_kind: int = 6, seed: int = 0) -> list[tuple[str, str]]:
    """(kind, text) pairs, `per_kind` of each kind, the same for the same seed."""
    rng = random.Random(seed)
    return [(kind, MAKERS[kind](rng)) for kind in KINDS for _ in range(per_kind)]


def _tokens(rng: random.Random) -> str:
    letters = string.ascii_lowercase
    return " ".join("".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(rng.randint(15, 40)))


def _base64(rng: random.Random) -> str:
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.randint(60, 240)))).decode()


def _hex(rng: random.Random) -> str:
    rows = []
    for i in range(rng.randint(4, 10)):
        row = " ".join(f"{rng.getrandbits(8):02x}" for _ in range(16))
        rows.append(f"{i * 16:08x}  {row}")
    return "\n".join(rows)


def _log(rng: random.Random) -> str:
    levels, parts = ("INFO", "WARN", "DEBUG", "ERROR"), ("kubelet", "sshd", "cron", "nginx", "systemd")
    lines = []
    for _ in range(rng.randint(5, 12)):
        ts = f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T{rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}Z"
        lines.append(f"{ts} {rng.choice(levels)} {rng.choice(parts)}[{rng.randint(100, 9999)}]: "
                     f"id={rng.getrandbits(32):08x} latency={rng.randint(1, 900)}ms status={rng.choice((200, 304, 499, 502))}")
    return "\n".join(lines)


def _mash(rng: random.Random) -> str:
    keys = "asdfghjklqwertyuiopzxcvbnm;'[],./"
    return "".join(rng.choice(keys) for _ in range(rng.randint(40, 160)))


def _foreign(rng: random.Random) -> str:
    return " ".join(rng.sample(FOREIGN, k=rng.randint(4, 8)))


def _numbers(rng: random.Random) -> str:
    return "\n".join(",".join(f"{rng.uniform(-1e3, 1e3):.3f}" for _ in range(6)) for _ in range(rng.randint(4, 12)))


MAKERS = {"tokens": _tokens, "base64": _base64, "hex": _hex, "log": _log, "mash": _mash,
          "foreign": _foreign, "numbers": _numbers}
