"""The API's answers for the users of a lineup, from its view.

A lineup's view (:mod:`xrelay.catalog.lineup_view`) holds its own list
templates, get.php templates, panel file and guide; :class:`LineupAnswers`
wraps each view in the same answer machinery the whole catalog uses
(:class:`~xrelay.api.answers.ListAnswers`,
:class:`~xrelay.api.xmltv.GuideServer`), so a lineup user's answers cost what
anyone's do: nothing is filtered per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from twisted.internet import defer
from twisted.logger import Logger

from xrelay.api.answers import AnswerCache, ListAnswers
from xrelay.api.xmltv import GuideServer
from xrelay.catalog.lineup_view import LineupView

__all__ = ["LineupAnswers", "LineupOffer"]

log = Logger()


@dataclass
class LineupOffer:
    """What the users of one lineup are answered from."""

    view: LineupView
    answers: ListAnswers
    #: None: the whole catalog's guide (the lineup holds every channel)
    guide: GuideServer | None
    #: panel_api.php's categories and channels, per base URL: (base, bytes)
    panel: tuple[str, bytes] | None = field(default=None)


class LineupAnswers:
    """Each lineup's offer, replaced when its view is."""

    def __init__(self, cache: AnswerCache | None = None) -> None:
        self.offers: dict[str, LineupOffer] = {}
        #: the answer cache the lineups share (with the whole catalog's answers)
        self.cache = cache if cache is not None else AnswerCache()

    def adopt(self, views: Mapping[str, LineupView]) -> None:
        """Serve *views* (lineup -> view) from now on; an unchanged view
        keeps its answers and their caches."""
        offers: dict[str, LineupOffer] = {}
        for name, view in views.items():
            old = self.offers.get(name)
            if old is not None and old.view is view:
                offers[name] = old
                continue
            answers = ListAnswers(self.cache)
            answers.adopt(view.lists)
            guide = None
            if view.guide is not None:
                guide = GuideServer()
                guide.adopt_file(view.guide.path, view.guide.size, view.guide.markers, view.directory)
            offers[name] = LineupOffer(view, answers, guide)
            if old is not None:  # the clients of the old view get their big answers compressed again
                answers.recent_bases = old.answers.recent_bases
                defer.Deferred.fromCoroutine(answers.warm()).addErrback(
                    lambda f: log.failure("warming a lineup's answers", f))
        for name, old in self.offers.items():
            if offers.get(name) is not old:
                self.cache.drop(old.answers)  # a view replaced or gone: its answers go
        self.offers = offers

    def offer(self, view: LineupView) -> LineupOffer:
        """The offer of *view* (adopting it if the listener has not yet)."""
        offer = self.offers.get(view.lineup)
        if offer is None or offer.view is not view:
            self.adopt({**{name: o.view for name, o in self.offers.items()}, view.lineup: view})
            offer = self.offers[view.lineup]
        return offer
