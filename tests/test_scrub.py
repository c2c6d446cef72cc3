"""The provider's secrets are removed from everything ingested."""

from __future__ import annotations

from xrelay.core.config import UpstreamConfig
from xrelay.core.scrub import BASE_MARKER, Scrubber

UP = UpstreamConfig(url="http://panel.example:8080", username="puser", password="ppass99")


def test_provider_hosted_urls_become_asset_urls() -> None:
    s = Scrubber(UP)
    assert s.url("http://panel.example:8080/images/a.png") == f"{BASE_MARKER}/asset/images/a.png"
    assert s.url("https://PANEL.example/img?x=1") == f"{BASE_MARKER}/asset/img?x=1"
    assert s.url("http://cdn.other/a.png") == "http://cdn.other/a.png"


def test_values_with_credentials_or_the_host_are_blanked() -> None:
    s = Scrubber(UP)
    assert s.url("http://panel.example:8080/live/puser/ppass99/1.ts") == ""
    assert s.url("http://elsewhere/x?password=ppass99") == ""
    assert s.url("see panel.example for details") == ""


def test_tree_blanks_direct_source_everywhere() -> None:
    s = Scrubber(UP)
    tree = s.tree({"a": [{"direct_source": "http://origin/x", "n": 1, "logo": "http://panel.example:8080/l.png"}]})
    assert tree == {"a": [{"direct_source": "", "n": 1, "logo": f"{BASE_MARKER}/asset/l.png"}]}


def test_bytes_and_text() -> None:
    s = Scrubber(UP)
    out = s.bytes_(b'<icon src="http://panel.example:8080/i.png"/> ppass99')
    assert b"panel.example" not in out and b"ppass99" not in out
    assert out.startswith(b'<icon src="' + BASE_MARKER.encode() + b"/asset/i.png")
    assert s.text("GET http://panel.example:8080/x?username=puser&password=ppass99") == \
        "GET http://***/x?username=***&password=***"
    assert s.leaks("nothing here") == []
    assert set(s.leaks("/live/puser/ppass99/ at panel.example")) == {"host", "password", "username"}


def test_any_case_and_url_encoded_forms() -> None:
    s = Scrubber(UpstreamConfig(url="http://Panel.Example:8080", username="prov user",
                                password="p@ss w/rd"))
    encoded = "http://cdn.example/live/prov%20user/p%40ss%20w%2Frd/1.ts"
    assert set(s.leaks(encoded)) == {"password", "username"}
    assert s.text(f"GET {encoded} from PANEL.EXAMPLE:8080") == \
        "GET http://cdn.example/live/***/***/1.ts from ***"
    assert s.text("password=p%40ss+w%2Frd") == "password=***"
    out = s.bytes_(b'<icon src="HTTP://PANEL.EXAMPLE:8080/i.png"/><x>p%40ss%20w%2Frd</x>')
    assert out == b'<icon src="' + BASE_MARKER.encode() + b'/asset/i.png"/><x></x>'
    assert s.url("http://cdn.example/x/prov%20user/y.png") == ""


def test_a_loopback_provider_is_masked_with_its_port() -> None:
    """The demo provider runs on 127.0.0.1 beside xrelay: the log masks its
    address with the port, and keeps xrelay's own 127.0.0.1:8080 readable."""
    s = Scrubber(UpstreamConfig(url="http://127.0.0.1:41234", username="prov", password="secretpw"))
    line = "demo: open http://127.0.0.1:8080/get.php ; upstream http://127.0.0.1:41234/live/prov/secretpw/1.ts"
    assert s.text(line) == "demo: open http://127.0.0.1:8080/get.php ; upstream http://***/live/***/***/1.ts"
    remote = Scrubber(UpstreamConfig(url="http://panel.example:8000", username="prov", password="secretpw"))
    assert remote.text("panel.example is down") == "*** is down"


SHORT_USER = UpstreamConfig(url="http://panel.example:8080", username="ab", password="ppass99")


def test_a_short_username_is_masked_where_a_url_carries_it() -> None:
    """Masking a two-letter name everywhere would mask every word holding
    it: it is masked as a URL path segment or query value only."""
    s = Scrubber(SHORT_USER)
    assert s.text("GET http://cdn.example/live/ab/ppass99/1.ts") == "GET http://cdn.example/live/***/***/1.ts"
    assert s.text("GET /live/AB/x/1.ts") == "GET /live/***/x/1.ts"
    assert s.text("/player_api.php?username=ab&password=x") == "/player_api.php?username=***&password=x"
    assert s.text("/get.php?password=x&username=ab") == "/get.php?password=x&username=***"
    assert s.text("url='http://cdn.example/x/ab' user=ab;") == "url='http://cdn.example/x/***' user=***;"
    assert s.text("/ab?x=1 and /ab#frag and /ab\nnext") == "/***?x=1 and /***#frag and /***\nnext"
    words = "about a table: /abc/cab/ab.ts ?x=abc&y=cab"
    assert s.text(words) == words
    assert s.leaks("http://cdn.example/live/ab/x/1.ts") == ["username"]
    assert s.leaks("?username=ab") == ["username"]
    assert s.leaks(words) == []


def test_a_short_username_url_encoded() -> None:
    s = Scrubber(UpstreamConfig(url="http://panel.example", username="é", password="ppass99"))
    assert s.text("/live/%C3%A9/1.ts ?username=%c3%a9 /live/é/") == "/live/***/1.ts ?username=*** /live/***/"
    assert s.text("café /caf%C3%A9") == "café /caf%C3%A9"
