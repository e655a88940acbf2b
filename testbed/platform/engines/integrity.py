"""Intel TME-MK with memory integrity (the memory integrity of Intel TDX): a MAC per line and
a TD-owner bit, kept beside the line, checked on every read.

Sources: Intel, "Intel Trust Domain Extensions" whitepaper and the Intel TDX Module base
architecture specification, sections on memory integrity and the TD owner bit, as public
summaries of them describe (for example enclaive's TDX documentation, "Confidentiality and
Integrity" and "Keys and Key Management"): cryptographic integrity (a 28-bit MAC per 64-byte
line over the ciphertext, the encryption tweak and the TD-owner bit, SHA-3-based, under one
integrity key the MCHECK firmware sets up at boot for the whole platform; the tweak is the
encrypted physical address, made with a tweak key of each HKID, so the MAC is bound to the
KeyID through it) and logical integrity (the TD-owner bit alone); a line that fails its check
is poisoned. A post to the Linux kernel list on TDX host support (LKML, June 2023, on a TDX
erratum) describes what a poisoned private line does: its next read consumes the poison as a
machine check. The MAC itself is :class:`~testbed.crypto.mac.LineMac` with
:class:`~testbed.crypto.mac.LineTweak` (their module docstring states the model's
construction).

What the model does, with the choices made where Intel publishes no detail:

- **Which KeyIDs are private.** KeyID 0 (the TME key) is the host's, shared KeyID; KeyIDs
  1..max, the ones the engine gives domains, are private (TD) KeyIDs. TDX gives private KeyIDs
  to TDs only; this engine gives one to every domain it makes, host *processes* included, and
  they get the TD-private behaviour below: the model's choice, to show what integrity adds to
  MKTME's per-domain keys.
- **Keys.** One MAC key for the platform, drawn from the platform RNG at boot after the TME key
  (MCHECK's integrity key). Each KeyID's tweak key is the tweak half ``K2`` of its XTS key (so it
  changes with SET_KEY_RANDOM / rotation; CLEAR_KEY makes the KeyID share KeyID 0's); a
  NO_ENCRYPT KeyID, which has no XTS key, gets a tweak key of its own from the RNG (the model's
  choice).
- **The sideband word** of each line (what ECC bits hold: not in the line's data): bits
  0..``mac_bits``-1 the MAC, bit 62 *poisoned*, bit 63 the TD-owner bit. A CPU write through a
  private KeyID sets the TD-owner bit, one through KeyID 0 clears it; the MAC covers the bit.
- **A read** through KeyID 0 of a line whose TD-owner bit is set returns zeros (no fault), and
  a write through KeyID 0 clears the bit: the model's choices (what such accesses do is not
  confirmed by the sources above). Any other read is checked: a line through a private KeyID
  without the TD-owner bit, or whose MAC under the reader's tweak does not match, is poisoned
  and the read refused
  (:class:`~testbed.errors.IntegrityViolation`); a poisoned line stays refused until a CPU
  writes it again.
- **Boot and page assignment.** The firmware initialises memory with integrity on: every line
  starts with the MAC of what DRAM holds, through KeyID 0. A frame given to a domain with a
  private KeyID is first written with zeros through that KeyID (as TDX's page acceptance
  initialises a private page with MOVDIR64B): without it, the domain's first partial write
  (a read-modify-write) would fail its own check.
- **The bus tap** reads and writes the line's data only; what is in the sideband bits stays. A
  forged or replayed line therefore meets the MAC the line already had. An interposer that also
  drives the ECC bits captures and replays a line *with* its sideband word (the program steps
  ``capture_sealed`` and ``write_sealed``): it cannot make a new MAC without the key, but it can
  put back an old one. Nothing here records *when* a line was written: integrity without
  freshness, so same-address rollback of a domain's own old line is not detected.
- **The hypervisor** stays trusted, as under ``mktme``: this engine models the memory
  controller's integrity, not the TDX module, so it does not declare guest isolation.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from ...crypto.mac import LINE_MAC_KEY_SIZE, TWEAK_KEY_SIZE, LineMac, LineTweak
from ...errors import ConfigError, IntegrityViolation, KeyNotProgrammed
from ...types import KeySlot
from .base import HOST, EngineOptions, EngineWithIntegrity
from .keys import KeySource
from .tme import MktmeEngine

__all__ = ["OWNER_BIT", "POISON_BIT", "MktmeIntegrityEngine"]

OWNER_BIT = np.uint64(1 << 63)
"""The TD-owner bit of a sideband word."""
POISON_BIT = np.uint64(1 << 62)
"""Set in a sideband word when the line failed a check."""


class MktmeIntegrityEngine(MktmeEngine, EngineWithIntegrity):
    """Intel TME-MK with integrity: MKTME plus a truncated MAC and a TD-owner bit per line.

    Args:
        keyid_bits, entropy_failures: as for :class:`~testbed.platform.engines.MktmeEngine`.
        mac_bits: MAC width kept per line (28 on Intel's parts).

    Raises:
        ConfigError: a width out of range.
    """

    name = "mktme-i"
    MIN_MAC_BITS: ClassVar[int] = LineMac.MIN_BITS
    MAX_MAC_BITS: ClassVar[int] = LineMac.MAX_BITS

    def __init__(
        self, keys: KeySource, reduced_width_bits: int | None = None, keyid_bits: int = 6,
        mac_bits: int = 28, entropy_failures: int = 0,
    ) -> None:
        if not self.MIN_MAC_BITS <= mac_bits <= self.MAX_MAC_BITS:
            raise ConfigError(
                f"mac_bits: must be {self.MIN_MAC_BITS}..{self.MAX_MAC_BITS}, got {mac_bits}")
        self.mac_bits = mac_bits
        self._tweaks: dict[KeySlot, LineTweak] = {}
        super().__init__(keys, reduced_width_bits, keyid_bits, entropy_failures)
        self._line_mac = LineMac(self.keys.key(LINE_MAC_KEY_SIZE), mac_bits)
        """The platform's one MAC key, made at boot after the TME key."""

    @classmethod
    def build(cls, keys: KeySource, options: EngineOptions) -> Self:
        return cls(keys, options.reduced_width_bits, options.keyid_bits, options.mac_bits,
                   options.pconfig_entropy_failures)

    # -- each KeyID's tweak key follows its key --------------------------------------------
    def program_key(self, slot: KeySlot, key: bytes | None = None) -> None:
        # The same draw the base class makes for a fresh key, kept to take its tweak half.
        key = self.keys.key(self.cipher_kind.key_size) if key is None else key
        super().program_key(slot, key)
        self._tweaks[slot] = LineTweak(key[-TWEAK_KEY_SIZE:])

    def share_key(self, slot: KeySlot, source: KeySlot) -> None:
        super().share_key(slot, source)
        self._tweaks[slot] = self._tweak(source)

    def set_plaintext(self, slot: KeySlot) -> None:
        super().set_plaintext(slot)
        self._tweaks[slot] = LineTweak(self.keys.key(TWEAK_KEY_SIZE))

    def forget_key(self, slot: KeySlot) -> None:
        super().forget_key(slot)
        self._tweaks.pop(slot, None)

    def _tweak(self, slot: KeySlot) -> LineTweak:
        try:
            return self._tweaks[slot]
        except KeyError:
            raise KeyNotProgrammed(f"{self.name}: key slot {slot} holds no key") from None

    def _tags(self, slot: KeySlot, addrs: NDArray[np.uint64], owners: NDArray[np.bool_],
              ciphertext: NDArray[np.uint8]) -> NDArray[np.uint64]:
        return self._line_mac.tags(self._tweak(slot).of(addrs), owners, ciphertext)

    # -- the integrity check ---------------------------------------------------------------
    def seal(
        self, slot: KeySlot, addrs: NDArray[np.uint64], ciphertext: NDArray[np.uint8]
    ) -> NDArray[np.uint64]:
        owner = slot != HOST
        owners = np.full(addrs.shape[0], owner, dtype=bool)
        tags = self._tags(slot, addrs, owners, ciphertext)
        return tags | OWNER_BIT if owner else tags

    def initialises(self, slot: KeySlot) -> bool:
        return slot != HOST

    def verify(
        self, slot: KeySlot, addrs: NDArray[np.uint64], ciphertext: NDArray[np.uint8],
        sideband: NDArray[np.uint64],
    ) -> NDArray[np.bool_]:
        owned: NDArray[np.bool_] = (sideband & OWNER_BIT) != 0
        poisoned: NDArray[np.bool_] = (sideband & POISON_BIT) != 0
        private = slot != HOST
        hidden: NDArray[np.bool_] = owned & ~poisoned if not private else np.zeros_like(owned)
        checked = ~hidden & ~poisoned
        mask = np.uint64((1 << self.mac_bits) - 1)
        tags = self._tags(slot, addrs, owned, ciphertext)
        bad = checked & ((sideband & mask) != tags)
        stray = checked & ~owned if private else np.zeros_like(owned)
        if (failed := bad | stray | poisoned).any():
            sideband[bad | stray] |= POISON_BIT
            i = int(np.argmax(failed))
            reason = ("it was poisoned by an earlier failed check" if poisoned[i] else
                      "its TD-owner bit is clear (written through another KeyID)" if stray[i]
                      else "its MAC does not match")
            raise IntegrityViolation(
                f"machine check: integrity failure reading line {int(addrs[i]):#x} through "
                f"KeyID {slot}: {reason}")
        return hidden
