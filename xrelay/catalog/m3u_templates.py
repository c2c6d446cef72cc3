"""get.php's playlist templates: the M3U of each kind and style with placeholders.

Written beside each generation by the ingest (:func:`write_templates`) and
read by the API (:class:`PlaylistTemplates`), which fills in xrelay's base
URL and the user's credentials per request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from xrelay.catalog.m3u import render_m3u
from xrelay.core.scrub import BASE_MARKER, PASS_MARKER, USER_MARKER

__all__ = ["PlaylistTemplates", "TemplateFile", "write_templates", "LIVE_EXT_MARKER", "KINDS", "STYLES"]

LIVE_EXT_MARKER = "@XRELAY_LIVEEXT@"
MARKERS = (BASE_MARKER, USER_MARKER, PASS_MARKER, LIVE_EXT_MARKER)
KINDS = ("live", "movie", "series")
STYLES = ("plus", "plain")


@dataclass
class TemplateFile:
    path: str
    size: int
    #: marker -> occurrences
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class PlaylistTemplates:
    files: dict[tuple[str, str], TemplateFile] = field(default_factory=dict)

    def parts(self, style: str, kinds: tuple[str, ...]) -> list[TemplateFile]:
        return [self.files[(style, kind)] for kind in KINDS if kind in kinds and (style, kind) in self.files]

    def manifest(self) -> list[dict[str, Any]]:
        return [{"style": style, "kind": kind, "file": Path(t.path).name, "size": t.size, "counts": t.counts}
                for (style, kind), t in self.files.items()]

    @classmethod
    def load(cls, directory: Path, entries: list[dict[str, Any]]) -> "PlaylistTemplates":
        """The templates a manifest describes (blocking: checks their sizes)."""
        out = cls()
        for e in entries:
            path = directory / e["file"]
            if path.stat().st_size != int(e["size"]):
                raise ValueError(f"{path}: not the size the manifest says")
            out.files[(e["style"], e["kind"])] = TemplateFile(str(path), int(e["size"]),
                                                              {str(k): int(v) for k, v in e["counts"].items()})
        return out


def _lines(bundle: dict[str, Any], style: str, kind: str) -> Iterator[str]:
    """One template's lines: xrelay's playlist renderer with placeholders."""
    return render_m3u(bundle, base=BASE_MARKER, username=USER_MARKER, password=PASS_MARKER,
                      plus=style == "plus", kinds=(kind,), quoted=True, header=False,
                      live_ext=LIVE_EXT_MARKER)


def write_templates(bundle: dict[str, Any], directory: Path,
                    kinds: tuple[str, ...] = KINDS, styles: tuple[str, ...] = STYLES) -> PlaylistTemplates:
    """Write the template files of *kinds* in *styles* (blocking: run in a thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = PlaylistTemplates()
    for style in styles:
        for kind in kinds:
            path = directory / f"{style}-{kind}.m3u"
            tmp = path.with_name(path.name + ".tmp")
            counts = dict.fromkeys(MARKERS, 0)
            size = 0
            with open(tmp, "wb") as f:
                batch: list[str] = []
                for line in _lines(bundle, style, kind):
                    batch.append(line)
                    if len(batch) >= 2000:
                        size += _flush(f, batch, counts)
                size += _flush(f, batch, counts)
            os.replace(tmp, path)
            out.files[(style, kind)] = TemplateFile(str(path), size, counts)
    return out


def _flush(f: Any, batch: list[str], counts: dict[str, int]) -> int:
    if not batch:
        return 0
    text = "".join(batch)
    batch.clear()
    for marker in MARKERS:
        counts[marker] += text.count(marker)
    data = text.encode("utf-8")
    f.write(data)
    return len(data)
