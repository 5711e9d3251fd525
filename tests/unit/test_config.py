import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.config import Config
from llmrouter.errors import ConfigError


def table(**router):
    return {
        "router": {"default_route": "a", **router},
        "routes": [{"name": "a", "description": "first"}, {"name": "b", "description": "second"}],
    }


def test_default_table_loads(default_config):
    assert len(default_config.table.routes) == 11
    assert default_config.table.default_route in default_config.table.names


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["routes"].append({"name": "a", "description": "again"}), "duplicate route name 'a'"),
        (lambda d: d.__setitem__("routes", []), "empty"),
        (lambda d: d["router"].__setitem__("default_route", "zzz"), "default_route 'zzz' is not in the table"),
        (lambda d: d["router"].__setitem__("thread", 2), "router.thread: unknown key"),
        (lambda d: d["routes"][0].__setitem__("targets", ["nowhere"]), "names target 'nowhere'"),
        (lambda d: d["routes"][0].__setitem__("name", "Bad Name!"), "routes[0].name"),
        (lambda d: d["routes"][0].__setitem__("description", "   "), "description is blank"),
        (lambda d: d.__setitem__("extra", 1), "unknown top-level key"),
    ],
)
def test_bad_tables_get_clear_messages(mutate, message):
    data = table()
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        Config.from_dict(data)
    assert message in str(exc.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no route table"):
        Config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[router\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        Config.load(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Config.load(binary)


def test_round_trip_keeps_fingerprint(default_config, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(default_config.to_toml())
    again = Config.load(path)
    assert again.table.fingerprint == default_config.table.fingerprint
    assert again.router == default_config.router
    assert again.targets == default_config.targets


def test_fingerprint_sees_every_change():
    base = Config.from_dict(table()).table.fingerprint
    d = table()
    d["routes"][1]["description"] = "second, sharper"
    assert Config.from_dict(d).table.fingerprint != base
    d = table()
    d["routes"][1]["examples"] = ["one example"]
    assert Config.from_dict(d).table.fingerprint != base
    d = table(default_route="b")
    assert Config.from_dict(d).table.fingerprint != base


def test_route_enum_is_the_table(default_config):
    enum = default_config.table.route_enum
    assert [m.value for m in enum] == list(default_config.table.names)


names = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True), min_size=1, max_size=12, unique=True)


@settings(max_examples=60, deadline=None)
@given(names, st.data())
def test_any_valid_shape_round_trips(route_names, data):
    default = data.draw(st.sampled_from(route_names))
    d = {
        "router": {"default_route": default},
        "routes": [{"name": n, "description": f"route {n}"} for n in route_names],
    }
    cfg = Config.from_dict(d)
    assert cfg.table.names == tuple(route_names)
    back = Config.from_dict(tomllib.loads(cfg.to_toml()))
    assert back.table.fingerprint == cfg.table.fingerprint


def test_with_router_validates(default_config):
    assert default_config.with_router(threads=2).router.threads == 2
    with pytest.raises(ConfigError, match="threads"):
        default_config.with_router(threads=0)
