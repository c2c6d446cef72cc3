"""The naive fan-out the benchmark compares xrelay with.

One upstream connection (treq, unbuffered) to a live URL; every chunk it
delivers is written to every connected client's request in a plain loop.
No producers, no packet alignment, no eviction, no bound on memory: what a
first attempt at a relay looks like.  Same HTTP framing as xrelay
(twisted.web, chunked for HTTP/1.1), so the CPU comparison is fair.

    python bench/naive_fanout.py UPSTREAM_URL PORT
"""

from __future__ import annotations

import sys

import treq
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


class Fanout(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.clients: set = set()

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        request.setHeader(b"content-type", b"video/mp2t")
        request.write(b"")
        self.clients.add(request)
        request.notifyFinish().addBoth(lambda _: self.clients.discard(request))
        return NOT_DONE_YET


class Upstream(Protocol):
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout

    def dataReceived(self, data: bytes) -> None:
        for request in tuple(self.fanout.clients):
            request.write(data)


async def main(reactor, upstream_url: str, port: str) -> None:  # type: ignore[no-untyped-def]
    fanout = Fanout()
    site = Site(fanout)
    site.log = lambda request: None  # type: ignore[method-assign]
    reactor.listenTCP(int(port), site, backlog=4096, interface="127.0.0.1")
    response = await treq.get(upstream_url, unbuffered=True)
    done = defer.Deferred()
    response.deliverBody(Upstream(fanout))
    print("naive fan-out ready", flush=True)
    await done


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:3])))
