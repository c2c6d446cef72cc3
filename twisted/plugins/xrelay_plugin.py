"""twistd plugin: ``twistd -n xrelay --config FILE``.

Kept tiny on purpose: twistd imports every plugin module to build its
command list, so the real work lives in :mod:`xrelay.tap`.
"""

from twisted.application.service import ServiceMaker

xrelay = ServiceMaker(
    "xrelay",
    "xrelay.tap",
    "Share one Xtream Codes IPTV subscription with every device on the LAN",
    "xrelay",
)
