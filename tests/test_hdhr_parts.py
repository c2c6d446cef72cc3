"""The small parts of the HDHomeRun devices: numbering, tuners, endpoints, logs."""

from __future__ import annotations

from array import array
from typing import Any

import pytest

from xrelay.catalog.list_template import ListTemplate
from xrelay.hdhr.channels import ArrayLineup, TunerChannel, catalog_numbers
from xrelay.hdhr.service import device_endpoint
from xrelay.hdhr.tuners import TunerBusy, Tuners
from xrelay.ops.metrics import endpoint_of
from xrelay.web.site import redact_uri


def row(stream_id: int, num: Any) -> dict[str, Any]:
    return {"stream_id": stream_id, "num": num, "name": f"C{stream_id}"}


def numbered(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    ids, numbers = catalog_numbers(rows)
    return list(zip(ids, numbers))


# -- numbering without lineups ---------------------------------------------------------


def test_the_providers_numbers_when_they_are_all_unique() -> None:
    assert numbered([row(7, 101), row(3, 5), row(9, 102)]) == [(7, 101), (3, 5), (9, 102)]


@pytest.mark.parametrize("nums", [[1, 1, 2], [1, None, 3], [1, 0, 3], [1, "2", 3], [True, 2, 3]])
def test_positions_when_a_number_is_missing_or_repeated(nums: list[Any]) -> None:
    assert numbered([row(i + 10, n) for i, n in enumerate(nums)]) == [(10, 1), (11, 2), (12, 3)]


def test_rows_without_a_stream_id_are_left_out() -> None:
    assert numbered([row(1, 1), {"num": 2, "name": "x"}, row(3, 3)]) == [(1, 1), (3, 3)]


def test_an_array_lineup_lists_in_order_and_finds_by_number() -> None:
    lineup = ArrayLineup(None, array("q", [7, 3, 9]), array("q", [101, 5, 102]), display_name=str.upper)
    assert list(lineup) == [TunerChannel("101", 7, "CHANNEL 7", None, None),
                            TunerChannel("5", 3, "CHANNEL 3", None, None),
                            TunerChannel("102", 9, "CHANNEL 9", None, None)]
    assert len(lineup) == 3
    assert lineup.find("5") == TunerChannel("5", 3, "CHANNEL 3", None, None)
    assert lineup.find("102") is not None and lineup.find("102").stream_id == 9  # type: ignore[union-attr]
    for missing in ("4", "1010", "", "5.1", "-5", "\u0665", "9" * 40):
        assert lineup.find(missing) is None, missing


# -- tuners ---------------------------------------------------------------------------


def test_auto_takes_the_lowest_free_tuner_and_a_named_one_only_if_free() -> None:
    count = [2]
    tuners = Tuners(lambda: count[0])
    first = tuners.take()
    second = tuners.take()
    assert (first.index, second.index) == (0, 1)
    with pytest.raises(TunerBusy):
        tuners.take()
    first.release()
    first.release()  # once only
    with pytest.raises(TunerBusy):
        tuners.take(1)
    again = tuners.take(0)
    assert again.index == 0
    # fewer tuners announced meanwhile: nothing more until enough are free
    count[0] = 1
    again.release()
    with pytest.raises(TunerBusy):
        tuners.take()
    second.release()
    assert tuners.take().index == 0
    assert not tuners.exists(1) and tuners.exists(0) and not tuners.exists(-1)


# -- a device's own port ----------------------------------------------------------------


@pytest.mark.parametrize(("listen", "expected"), [
    ("tcp:8080:backlog=1024", "tcp:5004"),
    ("tcp:8080:interface=192.168.1.10", "tcp:5004:interface=192.168.1.10"),
    ("tcp6:port=8080:interface=\\:\\:", "tcp:5004:interface=\\:\\:"),
    ("systemd:domain=INET:index=0", "tcp:5004"),
])
def test_a_devices_port_listens_on_xrelays_interface(listen: str, expected: str) -> None:
    assert device_endpoint(listen, 5004) == expected


# -- logs and metrics never name the token ----------------------------------------------


@pytest.mark.parametrize(("uri", "logged"), [
    ("/hdhr/living-room-key/discover.json", "/hdhr/***/discover.json"),
    ("/hdhr/living-room-key/auto/v101?duration=60", "/hdhr/***/auto/v101?duration=60"),
    ("/hdhr/living-room-key/tuner1/v101", "/hdhr/***/tuner1/v101"),
    ("/hdhr/living-room-key", "/hdhr/***"),
])
def test_the_access_log_masks_the_device_token(uri: str, logged: str) -> None:
    assert redact_uri(uri) == logged


@pytest.mark.parametrize("path", [b"/hdhr/key12345/lineup.json", b"/discover.json", b"/lineup.post",
                                  b"/auto/v101", b"/tuner0/v101", b"/guide.xml", b"/device.xml"])
def test_device_requests_are_counted_as_hdhr(path: bytes) -> None:
    assert endpoint_of(path) == "hdhr"


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_list_template_gives_all_its_rows_back_in_order(tmp_path: Any, on_disk: bool) -> None:
    rows = [row(i, i * 10) for i in range(1, 6)]
    template = ListTemplate.build(rows, tmp_path / "live.json" if on_disk else None, id_key="stream_id")
    if on_disk:
        template.data = None  # as a list bigger than IN_MEMORY is held
    assert list(template.rows()) == rows
