"""Memory-encryption engines: what the memory controller does to each line on its way to DRAM.

Every access carries a *key slot*: the KeyID in the physical address (MKTME), the ASID of the
running guest with the C-bit set (SEV), or the single TME key. Engines are told apart by
capabilities (:attr:`Engine.encrypts`, :attr:`Engine.per_domain_keys`,
:attr:`Engine.runtime_rotation`, :attr:`Engine.isolates_guests`, :attr:`Engine.attests`) and by
the interfaces :class:`EngineWithRmp`; code never asks for an engine by name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from ...crypto import LineCipher, as_blocks
from ...errors import ConfigError, KeyNotProgrammed, RmpViolation
from ...types import KeySlot
from .keys import CipherKind, KeySource

__all__ = [
    "ENGINES",
    "Engine",
    "EngineWithRmp",
    "MktmeEngine",
    "NoEngine",
    "PconfigCommand",
    "PconfigStatus",
    "RmpEntry",
    "SevEngine",
    "SevSnpEngine",
    "TmeEngine",
    "make_engine",
]

HOST = KeySlot(0)
"""Key slot of the host: KeyID 0 (the TME key) or ASID 0 (no C-bit: unencrypted under SEV)."""


class Engine:
    """Base engine: a table of key slots, each holding a cipher or ``None`` (plaintext).

    Args:
        keys: the platform RNG.
        reduced_width_bits: use the reduced-width cipher for every key (wear-out experiment).
    """

    name: ClassVar[str] = "none"
    family: ClassVar[str] = "xts"
    encrypts: ClassVar[bool] = False
    per_domain_keys: ClassVar[bool] = False
    """Whether each process or guest gets a key of its own."""
    runtime_rotation: ClassVar[bool] = False
    """Whether a domain's key can be replaced while the system runs."""
    isolates_guests: ClassVar[bool] = False
    """Whether guests are protected from the hypervisor (the hypervisor is outside the TCB)."""
    attests: ClassVar[bool] = False
    """Whether a platform security processor measures guest launches and signs attestation
    reports that a remote guest owner can verify."""

    def __init__(self, keys: KeySource, reduced_width_bits: int | None = None) -> None:
        self._keys = keys
        self.cipher_kind = CipherKind(self.family, reduced_width_bits)
        self._slots: dict[KeySlot, LineCipher | None] = {HOST: None}
        self._wear: dict[KeySlot, int] = {}

    # -- key slots ----------------------------------------------------------------------
    @property
    def cipher_label(self) -> str:
        """The cipher this engine's keys use, as shown in reports."""
        if not self.encrypts:
            return "none (plaintext)"
        probe = self.cipher_kind.build(bytes(range(1, self.cipher_kind.key_size + 1)))
        return probe.label

    def _new_cipher(self) -> LineCipher:
        return self.cipher_kind.build(self._keys.key(self.cipher_kind.key_size))

    def domain_slot(self, kind: str) -> KeySlot:
        """The key slot a new domain of ``kind`` (``process`` or ``guest``) runs with."""
        return HOST

    def release_slot(self, slot: KeySlot) -> None:
        """The domain that used ``slot`` is gone."""

    def rotate(self, slot: KeySlot) -> None:
        """Replace the key in ``slot`` by a fresh one (the caller re-encrypts the pages)."""
        raise ConfigError(f"engine {self.name} cannot rotate keys at run time")

    def wear(self, slot: KeySlot) -> int:
        """Blocks encrypted under the key now in ``slot`` (the wear counter)."""
        return self._wear.get(slot, 0)

    def _cipher(self, slot: KeySlot) -> LineCipher | None:
        try:
            return self._slots[slot]
        except KeyError:
            raise KeyNotProgrammed(f"{self.name}: key slot {slot} holds no key") from None

    # -- the data path ------------------------------------------------------------------
    def encrypt(
        self, slot: KeySlot, addrs: NDArray[np.uint64], lines: NDArray[np.uint8]
    ) -> NDArray[np.uint8]:
        """Lines on their way from a CPU (using ``slot``) to DRAM."""
        cipher = self._cipher(slot)
        if cipher is None:
            return np.array(lines, dtype=np.uint8, copy=True)
        self._wear[slot] = self._wear.get(slot, 0) + lines.shape[0] * cipher.blocks_per_line
        return cipher.encrypt(addrs, lines)

    def encrypt_varying(
        self, slot: KeySlot, addr: int, template: bytes, offset: int, blocks: NDArray[np.uint8]
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """``n`` lines to one address that differ only in the 16-byte block at ``offset``: the
        template's ciphertext and each line's ``offset`` block (see ``Machine.write_varying``).
        Every line passes through the engine whole, so each counts as a line of wear."""
        line, column = as_blocks(template, offset, blocks)
        cipher = self._cipher(slot)
        if cipher is None:
            return line[0].copy(), column.copy()
        self._wear[slot] = self._wear.get(slot, 0) + column.shape[0] * cipher.blocks_per_line
        return cipher.encrypt_varying(addr, line, offset, column)

    def decrypt(
        self, slot: KeySlot, addrs: NDArray[np.uint64], lines: NDArray[np.uint8]
    ) -> NDArray[np.uint8]:
        """Lines on their way from DRAM to a CPU using ``slot``."""
        cipher = self._cipher(slot)
        if cipher is None:
            return np.array(lines, dtype=np.uint8, copy=True)
        return cipher.decrypt(addrs, lines)

    # -- hypervisor access (overridden by engines with guest isolation) -------------------
    def check_hypervisor_write(self, pfn: int) -> None:
        """Raise when the platform refuses a hypervisor write to frame ``pfn``."""

    def hides_ciphertext(self, pfn: int) -> bool:
        """Whether a hypervisor read of ``pfn`` returns 0xff instead of the ciphertext."""
        return False

    def describe(self) -> str:
        """One line for reports."""
        return f"{self.name}: {self.cipher_label}"


class NoEngine(Engine):
    """No memory encryption: DRAM holds plaintext."""

    name = "none"


class TmeEngine(Engine):
    """Intel TME: one AES-XTS-128 key made at boot, used for all memory. Rotation needs a reboot."""

    name = "tme"
    encrypts = True

    def __init__(self, keys: KeySource, reduced_width_bits: int | None = None) -> None:
        super().__init__(keys, reduced_width_bits)
        self._slots[HOST] = self._new_cipher()


class PconfigCommand(enum.IntEnum):
    """MKTME_KEY_PROGRAM commands (keyid_ctrl bits 7:0)."""

    SET_KEY_DIRECT = 0
    SET_KEY_RANDOM = 1
    CLEAR_KEY = 2
    NO_ENCRYPT = 3


class PconfigStatus(enum.IntEnum):
    """Return codes of PCONFIG MKTME_KEY_PROGRAM."""

    PROG_SUCCESS = 0
    INVALID_PROG_CMD = 1
    ENTROPY_ERROR = 2
    INVALID_KEYID = 3
    INVALID_ENC_ALG = 4
    DEVICE_BUSY = 5


AES_XTS_128 = 1 << 8
"""keyid_ctrl bits 23:8: the only encryption algorithm MKTME offers."""


class MktmeEngine(TmeEngine):
    """Intel MKTME: KeyIDs in the upper physical-address bits, keys programmed with PCONFIG.

    Args:
        keyid_bits: physical-address bits used for the KeyID: KeyIDs ``1 .. 2**bits - 1``
            are software-programmable; KeyID 0 is the TME key.
    """

    name = "mktme"
    per_domain_keys = True
    runtime_rotation = True
    MAX_KEYID_BITS: ClassVar[int] = 15

    def __init__(
        self, keys: KeySource, reduced_width_bits: int | None = None, keyid_bits: int = 6
    ) -> None:
        if not 1 <= keyid_bits <= self.MAX_KEYID_BITS:
            raise ConfigError(
                f"keyid_bits: must be 1..{self.MAX_KEYID_BITS}, got {keyid_bits}"
            )
        super().__init__(keys, reduced_width_bits)
        self.keyid_bits = keyid_bits
        self.max_keyid = (1 << keyid_bits) - 1
        self._in_use: set[int] = set()
        self.busy = False
        """Set to make PCONFIG answer DEVICE_BUSY (a key table that cannot be reached)."""

    def pconfig(
        self,
        command: int,
        keyid: int,
        key: bytes | None = None,
        enc_alg: int = AES_XTS_128,
    ) -> PconfigStatus:
        """Program one KeyID, as PCONFIG MKTME_KEY_PROGRAM does. Never raises on bad input.

        Args:
            command: a :class:`PconfigCommand` value.
            keyid: 1 .. ``max_keyid``.
            key: data key then tweak key, for SET_KEY_DIRECT.
            enc_alg: must be AES-XTS-128 for the SET commands.

        Returns:
            The status code the instruction would leave in EAX.
        """
        if self.busy:
            return PconfigStatus.DEVICE_BUSY
        if not 1 <= keyid <= self.max_keyid:
            return PconfigStatus.INVALID_KEYID
        if command not in PconfigCommand.__members__.values():
            return PconfigStatus.INVALID_PROG_CMD
        cmd = PconfigCommand(command)
        slot = KeySlot(keyid)
        if cmd in (PconfigCommand.SET_KEY_DIRECT, PconfigCommand.SET_KEY_RANDOM):
            if enc_alg != AES_XTS_128:
                return PconfigStatus.INVALID_ENC_ALG
        if cmd is PconfigCommand.SET_KEY_DIRECT:
            if key is None or len(key) != self.cipher_kind.key_size:
                return PconfigStatus.INVALID_PROG_CMD
            try:
                self._slots[slot] = self.cipher_kind.build(key)
            except ConfigError:
                return PconfigStatus.INVALID_PROG_CMD
        elif cmd is PconfigCommand.SET_KEY_RANDOM:
            self._slots[slot] = self._new_cipher()
        elif cmd is PconfigCommand.CLEAR_KEY:
            # After CLEAR_KEY the KeyID encrypts with the platform TME key.
            self._slots[slot] = self._slots[HOST]
        else:
            self._slots[slot] = None
        self._wear[slot] = 0
        return PconfigStatus.PROG_SUCCESS

    def domain_slot(self, kind: str) -> KeySlot:
        for keyid in map(KeySlot, range(1, self.max_keyid + 1)):
            if keyid not in self._in_use:
                status = self.pconfig(PconfigCommand.SET_KEY_RANDOM, keyid)
                if status is not PconfigStatus.PROG_SUCCESS:
                    raise KeyNotProgrammed(f"PCONFIG failed for KeyID {keyid}: {status.name}")
                self._in_use.add(keyid)
                return keyid
        raise KeyNotProgrammed(f"no free KeyID (all {self.max_keyid} in use)")

    def release_slot(self, slot: KeySlot) -> None:
        if slot in self._in_use:
            status = self.pconfig(PconfigCommand.CLEAR_KEY, slot)
            if status is not PconfigStatus.PROG_SUCCESS:
                # The key stays loaded: keep the KeyID reserved rather than hand it out again.
                raise KeyNotProgrammed(f"PCONFIG CLEAR_KEY failed for KeyID {slot}: {status.name}")
            self._in_use.discard(slot)

    def rotate(self, slot: KeySlot) -> None:
        status = self.pconfig(PconfigCommand.SET_KEY_RANDOM, slot)
        if status is not PconfigStatus.PROG_SUCCESS:
            raise KeyNotProgrammed(f"PCONFIG failed for KeyID {slot}: {status.name}")


class SevEngine(Engine):
    """AMD SEV: one AES-128 key per guest ASID (XEX, physical-address tweak); no integrity.

    The host runs with ASID 0 and no C-bit: its accesses are not encrypted (SME off), so a
    hypervisor reading guest memory sees the guest's ciphertext.

    Args:
        asids: number of guest ASIDs (1..asids).
    """

    name = "sev"
    family = "xex"
    encrypts = True
    per_domain_keys = True
    isolates_guests = True
    attests = True
    MAX_ASIDS: ClassVar[int] = 1006

    def __init__(
        self, keys: KeySource, reduced_width_bits: int | None = None, asids: int = 15
    ) -> None:
        if not 1 <= asids <= self.MAX_ASIDS:
            raise ConfigError(f"asids: must be 1..{self.MAX_ASIDS}, got {asids}")
        super().__init__(keys, reduced_width_bits)
        self.asids = asids

    def domain_slot(self, kind: str) -> KeySlot:
        if kind != "guest":
            return HOST
        for asid in map(KeySlot, range(1, self.asids + 1)):
            if asid not in self._slots:
                self._slots[asid] = self._new_cipher()
                self._wear[asid] = 0
                return asid
        raise KeyNotProgrammed(f"no free ASID (all {self.asids} in use)")

    def release_slot(self, slot: KeySlot) -> None:
        # DECOMMISSION: the firmware destroys the guest key.
        if slot != HOST:
            self._slots.pop(slot, None)


@dataclass
class RmpEntry:
    """One Reverse Map Table entry (per 4 KiB frame)."""

    owner: int = 0
    assigned: bool = False
    validated: bool = False
    gpn: int = -1
    """Guest page number the frame was validated for (PVALIDATE records it)."""


class EngineWithRmp(SevEngine):
    """Interface: an engine that checks page ownership in a Reverse Map Table."""

    def rmp_assign(self, pfn: int, asid: int, gpn: int = -1) -> None:
        """RMPUPDATE + PVALIDATE: frame ``pfn`` now backs guest page ``gpn`` of guest ``asid``."""
        raise NotImplementedError

    def check_guest_access(self, pfn: int, asid: int, gpn: int) -> None:
        """Raise unless ``pfn`` is assigned to ``asid``, validated, for guest page ``gpn``."""
        raise NotImplementedError

    def rmp_reclaim(self, pfn: int) -> None:
        """The frame goes back to the hypervisor."""
        raise NotImplementedError


class SevSnpEngine(EngineWithRmp):
    """AMD SEV-SNP: SEV plus the RMP. Hypervisor writes to guest-owned frames fault.

    Hypervisor *reads* are not RMP-checked; with ``ciphertext_hiding`` they return 0xff.
    """

    name = "sev-snp"

    def __init__(
        self,
        keys: KeySource,
        reduced_width_bits: int | None = None,
        asids: int = 15,
        ciphertext_hiding: bool = False,
    ) -> None:
        super().__init__(keys, reduced_width_bits, asids)
        self.ciphertext_hiding = ciphertext_hiding
        self.rmp: dict[int, RmpEntry] = {}

    def rmp_assign(self, pfn: int, asid: int, gpn: int = -1) -> None:
        self.rmp[pfn] = RmpEntry(owner=asid, assigned=True, validated=True, gpn=gpn)

    def check_guest_access(self, pfn: int, asid: int, gpn: int) -> None:
        entry = self.rmp.get(pfn)
        if entry is None or not entry.assigned or entry.owner != asid:
            raise RmpViolation(f"#NPF: frame {pfn} behind guest page {gpn} is not assigned to "
                               f"ASID {asid}")
        if not entry.validated or entry.gpn != gpn:
            raise RmpViolation(f"#VC: frame {pfn} was validated for guest page {entry.gpn}, "
                               f"not {gpn}: the hypervisor remapped the page")

    def rmp_reclaim(self, pfn: int) -> None:
        self.rmp.pop(pfn, None)

    def check_hypervisor_write(self, pfn: int) -> None:
        entry = self.rmp.get(pfn)
        if entry is not None and entry.assigned:
            raise RmpViolation(
                f"RMP violation: hypervisor write to frame {pfn} owned by ASID {entry.owner}"
            )

    def hides_ciphertext(self, pfn: int) -> bool:
        entry = self.rmp.get(pfn)
        return self.ciphertext_hiding and entry is not None and entry.assigned


ENGINES: dict[str, type[Engine]] = {
    cls.name: cls for cls in (NoEngine, TmeEngine, MktmeEngine, SevEngine, SevSnpEngine)
}


def make_engine(
    name: str,
    keys: KeySource,
    *,
    reduced_width_bits: int | None = None,
    keyid_bits: int = 6,
    asids: int = 15,
    ciphertext_hiding: bool = False,
) -> Engine:
    """Build the engine called ``name`` with the options that apply to it."""
    try:
        cls = ENGINES[name]
    except KeyError:
        raise ConfigError(f"engine: unknown {name!r}; known: {', '.join(ENGINES)}") from None
    if cls is MktmeEngine:
        return MktmeEngine(keys, reduced_width_bits, keyid_bits=keyid_bits)
    if cls is SevSnpEngine:
        return SevSnpEngine(keys, reduced_width_bits, asids, ciphertext_hiding)
    if cls is SevEngine:
        return SevEngine(keys, reduced_width_bits, asids)
    return cls(keys, reduced_width_bits)
