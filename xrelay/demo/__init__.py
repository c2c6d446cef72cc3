"""xrelay's built-in demo provider: a real HTTP server that behaves like an
Xtream Codes panel, used by ``twistd -n xrelay --demo``, the tests and the
benchmarks.  See :mod:`xrelay.demo.provider`.
"""

from .catalog import DemoCatalog
from .faults import DemoFaults
from .provider import DemoProvider, DemoProviderService, DemoSettings
from .stats import DemoStats

__all__ = ["DemoCatalog", "DemoFaults", "DemoProvider", "DemoProviderService", "DemoSettings", "DemoStats"]
