"""The built-in engines by name, and building one by name.

This is what the platform itself knows. Engines from plugins join these in
:data:`testbed.registry.engines` (``registry.engines.get(name).build(keys, options)`` builds
any registered engine).
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import Engine, EngineOptions, NoEngine
from .integrity import MktmeIntegrityEngine
from .keys import KeySource
from .sev import SevEngine, SevSnpEngine
from .tme import MktmeEngine, TmeEngine

__all__ = ["ENGINES", "engine_class", "make_engine"]

ENGINES: dict[str, type[Engine]] = {
    cls.name: cls for cls in (NoEngine, TmeEngine, MktmeEngine, MktmeIntegrityEngine, SevEngine,
                               SevSnpEngine)
}
"""The built-in engines: :attr:`Engine.name` -> class."""


def engine_class(name: str) -> type[Engine]:
    """The built-in engine called ``name``.

    Raises:
        ConfigError: no engine has that name.
    """
    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(f"engine: unknown {name!r}; built-in: {', '.join(ENGINES)} (engines "
                          "from plugins are in testbed.registry.engines)") from None


def make_engine(
    name: str,
    keys: KeySource,
    *,
    reduced_width_bits: int | None = None,
    keyid_bits: int = EngineOptions.keyid_bits,
    asids: int = EngineOptions.asids,
    ciphertext_hiding: bool = False,
    mac_bits: int = EngineOptions.mac_bits,
) -> Engine:
    """Build the engine called ``name`` with the options that apply to it (see
    :class:`EngineOptions`); ``engine_class(name).build(keys, options)`` does the same."""
    options = EngineOptions(reduced_width_bits=reduced_width_bits, keyid_bits=keyid_bits,
                            asids=asids, ciphertext_hiding=ciphertext_hiding,
                            mac_bits=mac_bits)
    return engine_class(name).build(keys, options)
