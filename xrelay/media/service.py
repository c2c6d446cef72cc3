"""The media part's service: closes every proxied file and HLS channel when xrelay stops."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service

from xrelay.media.files import FileRelay
from xrelay.media.hls_proxy import HlsServer

__all__ = ["MediaService"]


class MediaService(Service):
    """Closes every proxied file and HLS channel when xrelay stops."""

    name = "media"

    def __init__(self, files: FileRelay, hls: HlsServer) -> None:
        self.files = files
        self.hls = hls

    def stopService(self) -> Any:
        super().stopService()
        self.hls.close_all()
        return self.files.close_all()
