"""HDHomeRun devices: configuration entries, DeviceIDs and the salt file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from xrelay.core.config import ConfigError, HdhrDevice, parse_config, parse_devices
from xrelay.hdhr.device import (
    SALT_FILE,
    check_digit,
    device_id,
    device_ids,
    is_valid_device_id,
    load_salt,
)

SOURCE = "/etc/xrelay/xrelay.toml"


def parse(*tables: dict[str, Any]) -> tuple[HdhrDevice, ...]:
    return parse_devices(list(tables), SOURCE)


# -- the check digit -------------------------------------------------------


def test_silicondusts_example_id_validates() -> None:
    assert check_digit(0x10439EF) == 0xD
    assert is_valid_device_id("10439EFD")
    assert is_valid_device_id("10439efd")


@pytest.mark.parametrize("text", ["10439EFC", "10439EF", "10439EFDD", "1043 EFD", "G0439EFD", ""])
def test_other_ids_do_not(text: str) -> None:
    assert not is_valid_device_id(text)


def test_exactly_one_check_digit_fits_any_seven_digits() -> None:
    for first_seven in (0x0000000, 0x1234567, 0xFFFFFFF, 0x10439EF, 0xABCDEF0):
        valid = [d for d in range(16) if is_valid_device_id(f"{first_seven:07X}{d:X}")]
        assert valid == [check_digit(first_seven)]


# -- generated ids ---------------------------------------------------------


def test_generated_ids_validate_and_differ_by_name() -> None:
    salt = bytes(range(16))
    ids = {device_id(f"tuner {i}", salt) for i in range(200)}
    assert len(ids) == 200
    assert all(is_valid_device_id(v) and v.startswith("1") and v == v.upper() for v in ids)


def test_the_id_depends_on_the_name_and_the_salt_only() -> None:
    salt = b"\x01" * 16
    a = HdhrDevice(name="Living room", token="aaaaaaaa", tuners=2)
    b = HdhrDevice(name="Living room", token="bbbbbbbb", tuners=6, port=5004, lineup="sport")
    assert device_ids([a], salt) == device_ids([b], salt)
    assert device_id("Living room", salt) != device_id("Living room", b"\x02" * 16)
    assert device_id("Living room", salt) != device_id("Kitchen", salt)


def test_a_collision_picks_another_valid_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import xrelay.hdhr.device as dev

    real = dev.device_id
    monkeypatch.setattr(dev, "device_id",
                        lambda name, salt, attempt=0: "10439EFD" if attempt == 0 else real(name, salt, attempt))
    ids = dev.device_ids([HdhrDevice("a", "aaaaaaaa"), HdhrDevice("b", "bbbbbbbb")], b"s" * 16)
    assert ids["a"] == "10439EFD"
    assert ids["b"] != "10439EFD" and is_valid_device_id(ids["b"])


def test_ids_are_stable_across_restarts(tmp_path: Path) -> None:
    devices = parse({"name": "Plex", "token": "plex-key-1", "tuners": 2})
    first = device_ids(devices, load_salt(tmp_path))
    # A restart with more tuners and a port: same salt file, same id.
    again = parse({"name": "Plex", "token": "plex-key-1", "tuners": 4, "port": 5004})
    assert device_ids(again, load_salt(tmp_path)) == first
    # Another installation (another data directory): another id.
    other = tmp_path / "other"
    assert device_ids(devices, load_salt(other)) != first


# -- the salt file ---------------------------------------------------------


def test_the_salt_file_is_made_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    salt = load_salt(data_dir)  # the directory is made too
    path = data_dir / SALT_FILE
    text = path.read_text()
    assert len(salt) == 16 and text == salt.hex() + "\n"
    assert load_salt(data_dir) == salt
    assert path.read_text() == text
    assert sorted(os.listdir(data_dir)) == [SALT_FILE]  # no temporary file left


def test_an_existing_salt_file_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes racing: the second one's link fails and it reads the first's."""
    (tmp_path / SALT_FILE).write_text("ab" * 16 + "\n")
    import xrelay.hdhr.device as dev

    reads = iter([FileNotFoundError(), None])
    real = dev._read_salt

    def racing(path: Path) -> bytes:
        step = next(reads)
        if step is not None:
            raise step
        return real(path)

    monkeypatch.setattr(dev, "_read_salt", racing)
    assert dev.load_salt(tmp_path) == bytes.fromhex("ab" * 16)
    assert sorted(os.listdir(tmp_path)) == [SALT_FILE]


def test_a_damaged_salt_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / SALT_FILE).write_text("not a salt")
    with pytest.raises(ConfigError, match=r"hdhr-salt: not a salt file"):
        load_salt(tmp_path)


# -- configuration ---------------------------------------------------------


def test_a_full_entry_and_the_defaults() -> None:
    full, plain = parse(
        {"name": "Plex tuner", "token": "Plex.Tuner_01", "lineup": "sport", "tuners": 3,
         "port": 5004, "udp_discovery": True},
        {"name": "Jellyfin", "token": "jf-0123456"},
    )
    assert full == HdhrDevice("Plex tuner", "Plex.Tuner_01", "sport", 3, 5004, True)
    assert plain == HdhrDevice("Jellyfin", "jf-0123456")
    assert plain.lineup is None and plain.tuners is None and plain.port is None
    assert not plain.udp_discovery
    assert "Plex.Tuner_01" not in repr(full) and full.masked()["token"] == "***"
    assert parse() == ()


@pytest.mark.parametrize(("tables", "message"), [
    ([{"token": "abcdefgh"}], "hdhr[0].name: missing"),
    ([{"name": " ", "token": "abcdefgh"}], "hdhr[0].name: must not be empty"),
    ([{"name": "a"}], "hdhr[0].token: missing"),
    ([{"name": "a", "token": "short"}], "hdhr[0].token: must be at least 8 characters"),
    ([{"name": "a", "token": "has/slash"}], "hdhr[0].token: may hold only"),
    ([{"name": "a", "token": 12345678}], "hdhr[0].token: expected a string, got an integer"),
    ([{"name": "a", "token": "abcdefgh", "tuners": 0}], "hdhr[0].tuners: must be between 1 and 255"),
    ([{"name": "a", "token": "abcdefgh", "tuners": True}], "hdhr[0].tuners: expected an integer"),
    ([{"name": "a", "token": "abcdefgh", "port": 70000}], "hdhr[0].port: must be between"),
    ([{"name": "a", "token": "abcdefgh", "lineup": ""}], "hdhr[0].lineup: must not be empty"),
    ([{"name": "a", "token": "abcdefgh", "udp_discovery": "yes"}], "hdhr[0].udp_discovery: expected a boolean"),
    ([{"name": "a", "token": "abcdefgh", "colour": "red"}], "hdhr[0].colour: unknown key"),
    ([{"name": "a", "token": "abcdefgh"}, {"name": "A", "token": "bcdefghi"}],
     "hdhr[1].name: duplicate device name 'A'"),
    ([{"name": "a", "token": "abcdefgh"}, {"name": "b", "token": "abcdefgh"}],
     "hdhr[1].token: the same token as another device"),
    ([{"name": "a", "token": "abcdefgh", "port": 5004}, {"name": "b", "token": "bcdefghi", "port": 5004}],
     "hdhr[1].port: port 5004 is already another device's"),
    (["not a table"], "hdhr[0]: must be a table, not a string"),
])
def test_mistakes_are_one_line_naming_the_key(tables: list[Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_devices(tables, SOURCE)
    assert str(caught.value) == f"{SOURCE}: {message}" or str(caught.value).startswith(f"{SOURCE}: {message}")
    assert "\n" not in str(caught.value)
    # The token never appears in an error.
    assert "abcdefgh" not in str(caught.value)


def test_hdhr_must_be_an_array_of_tables() -> None:
    with pytest.raises(ConfigError, match=r"hdhr: must be an array of tables"):
        parse_devices({"name": "a"}, SOURCE)


# -- in the configuration file -----------------------------------------------

CONFIG = {"upstream": {"url": "http://provider.example", "username": "pu", "password": "pp"},
          "server": {"listen": "tcp:8080:interface=127.0.0.1"}}


def test_the_configuration_holds_the_devices_and_masks_their_tokens() -> None:
    config = parse_config({**CONFIG, "hdhr": [{"name": "Plex", "token": "plex-key-1", "port": 5004}]},
                          SOURCE, environ={})
    assert config.hdhr == (HdhrDevice("Plex", "plex-key-1", port=5004),)
    assert config.masked()["hdhr"] == [{"name": "Plex", "token": "***", "lineup": None, "tuners": None,
                                        "port": 5004, "udp_discovery": False}]
    assert "plex-key-1" not in repr(config)
    assert parse_config(CONFIG, SOURCE, environ={}).hdhr == ()


def test_a_device_port_may_not_be_the_listening_port() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**CONFIG, "hdhr": [{"name": "Plex", "token": "plex-key-1", "port": 8080}]},
                     SOURCE, environ={})
    assert str(caught.value) == f"{SOURCE}: hdhr[0].port: 8080 is [server] listen's port"


def test_hdhr_as_a_single_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"hdhr: must be an array of tables"):
        parse_config({**CONFIG, "hdhr": {"name": "Plex", "token": "plex-key-1"}}, SOURCE, environ={})
