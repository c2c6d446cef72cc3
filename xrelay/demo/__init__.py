"""xrelay's built-in demo provider: a real HTTP server that behaves like an
Xtream Codes panel.  It is the upstream of ``twistd -n xrelay --demo`` and the
fixture of the integration tests and benchmarks.

Quick reference (details in each module's docstring):

    provider = DemoProvider(reactor, DemoSettings(max_connections=1, live=50))
    await provider.listen()              # tcp:0 on 127.0.0.1
    provider.url                         # "http://127.0.0.1:PORT"
    provider.stats                       # DemoStats: what it received
    provider.faults.api = "bad_json"     # DemoFaults: break it at runtime
    await provider.stop()

    python -m xrelay.demo --listen tcp:9000 --live 1000 --bitrate 8e6

Account: ``provider-user`` / ``provider-pass`` by default.

Catalog ids (``catalog.py``): live stream ids ``1..live``; movie ids follow
(``live+1..live+vod``); episode ids follow the movies; series ids
``1..series``.  Live channel ``i+1`` has catch-up when ``i % 5 == 0``
(ids 1, 6, 11, ...), ``epg_channel_id`` ``"ch{id}.demo"``.  ``quirky=True``
adds the real-panel oddities listed in :mod:`xrelay.demo.catalog`.

Streams (``streams.py``, ``hls.py``): live TS loops ``sample.ts`` paced at
its own bitrate (``bitrate_bps`` overrides; ``pad`` reaches it with null
packets), packet-aligned, with continuous timestamps; channels of ``hls_only``
refuse TS (a 302 to their playlist, or 403); HLS URI forms by channel id: 1 absolute, 2 host-relative,
3 relative, 4 master playlist, 5 AES-128 key, then again from 6.  Movies
and episodes are one file (``provider.vod_bytes(id)``) with full Range.

Accounting (``stats.py``): ``stats.requests[kind]``, ``stats.opened[(kind,
id)]``, ``stats.open_streams``, ``stats.segment_fetches[path]``,
``stats.timeshift``, ``stats.kicked``, and ``stats.wait_for(predicate)``.
The account's ``max_connections`` is enforced on stream bodies (live, vod,
timeshift) by cutting the oldest, like a panel.
"""

from .catalog import DemoCatalog
from .faults import DemoFaults
from .provider import DemoProvider, DemoProviderService, DemoSettings
from .stats import DemoStats

__all__ = ["DemoCatalog", "DemoFaults", "DemoProvider", "DemoProviderService", "DemoSettings",
           "DemoStats"]
