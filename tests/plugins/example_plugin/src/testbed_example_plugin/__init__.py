"""An example plugin for memcrypt-testbed: one attack and one engine that live outside the testbed.

- :class:`ColdBoot` (:mod:`.cold_boot`), a cold-boot read of DRAM, registered in the
  ``testbed.attacks`` entry-point group as ``cold-boot``;
- :class:`SmeEngine` (:mod:`.sme`), AMD Secure Memory Encryption, registered in the
  ``testbed.engines`` group as ``sme``.

Both use only the testbed's public API.
"""

from __future__ import annotations

from .cold_boot import ColdBoot, ColdBootMetrics, ColdBootParams
from .sme import SmeEngine

__all__ = ["ColdBoot", "ColdBootMetrics", "ColdBootParams", "SmeEngine"]
