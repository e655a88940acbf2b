"""The engine base and the capability interfaces engines implement.

Every access carries a *key slot*: the KeyID in the physical address (MKTME), the ASID of the
running guest with the C-bit set (SEV), or the single TME key. Engines are told apart by the
interfaces they implement (:class:`EngineWithKeyIds`, :class:`EngineWithRuntimeRotation`,
:class:`EngineWithGuestIsolation`, :class:`EngineWithRmp`, :class:`EngineWithAttestation`,
:class:`EngineWithIntegrity`) and by
the boolean capabilities derived from them; code never asks for an engine by name.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from ...crypto import BlockGrid, LineCipher, as_blocks
from ...crypto.grid import search_by_blocks
from ...errors import KeyNotProgrammed
from ...types import LINE_SIZE, KeySlot, Pfn
from .keys import CipherFamily, CipherKind, KeySource

__all__ = [
    "AES_XTS_128",
    "HOST",
    "Engine",
    "EngineOptions",
    "EngineWithAttestation",
    "EngineWithGuestIsolation",
    "EngineWithIntegrity",
    "EngineWithKeyIds",
    "EngineWithRmp",
    "EngineWithRuntimeRotation",
    "NoEngine",
    "PconfigCommand",
    "PconfigStatus",
]

HOST = KeySlot(0)
"""Key slot of the host: KeyID 0 (the TME key) or ASID 0 (no C-bit: unencrypted under SEV)."""


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Options an engine may be built with; each engine takes those that apply to it.

    Attributes:
        reduced_width_bits: use the reduced-width cipher for every key (wear-out experiment).
        keyid_bits: MKTME: physical-address bits that carry the KeyID.
        asids: SEV: number of guest ASIDs.
        ciphertext_hiding: SEV-SNP: hypervisor reads of guest pages return 0xff.
        pconfig_entropy_failures: MKTME: PCONFIG SET_KEY_RANDOM answers ENTROPY_ERROR this
            many times in a row before each success (0: the entropy source never fails).
        mac_bits: memory integrity: width of the MAC kept beside every line.
    """

    reduced_width_bits: int | None = None
    keyid_bits: int = 6
    asids: int = 15
    ciphertext_hiding: bool = False
    pconfig_entropy_failures: int = 0
    mac_bits: int = 28


# -- capability interfaces --------------------------------------------------------------------
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


class EngineWithKeyIds(abc.ABC):
    """Interface: KeyIDs carried in the upper physical-address bits, programmed with PCONFIG."""

    keyid_bits: int
    """Physical-address bits used for the KeyID."""
    max_keyid: int
    """The highest software-programmable KeyID (KeyID 0 is the TME key)."""
    pconfig_retries: int = 0
    """PCONFIG executions the kernel repeated after ENTROPY_ERROR or DEVICE_BUSY, so far (an
    engine that never retries may leave it at 0)."""

    @abc.abstractmethod
    def pconfig(
        self, command: int, keyid: int, key: bytes | None = None, enc_alg: int = AES_XTS_128
    ) -> PconfigStatus:
        """Program one KeyID, as PCONFIG MKTME_KEY_PROGRAM does. Never raises on bad input.

        Args:
            command: a :class:`PconfigCommand` value.
            keyid: 1 .. :attr:`max_keyid`.
            key: data key then tweak key, for SET_KEY_DIRECT.
            enc_alg: must be AES-XTS-128 for the SET commands.

        Returns:
            The status code the instruction would leave in EAX.
        """


class EngineWithRuntimeRotation(abc.ABC):
    """Interface: a domain's key can be replaced while the system runs."""

    @abc.abstractmethod
    def rotate(self, slot: KeySlot) -> None:
        """Replace the key in ``slot`` by a fresh one (the caller re-encrypts the pages)."""


class EngineWithGuestIsolation(abc.ABC):
    """Interface: guests are protected from the hypervisor (it is outside the TCB): each guest
    ASID has a key of its own and the hypervisor, running without one, sees ciphertext."""

    asids: int
    """Guest ASIDs: 1 .. asids."""


class EngineWithRmp(abc.ABC):
    """Interface: page ownership checked in a Reverse Map Table (SEV-SNP)."""

    @abc.abstractmethod
    def rmp_assign(self, pfn: Pfn, asid: KeySlot, gpn: int = -1) -> None:
        """RMPUPDATE + PVALIDATE: frame ``pfn`` now backs guest page ``gpn`` of guest ``asid``."""

    @abc.abstractmethod
    def check_guest_access(self, pfn: Pfn, asid: KeySlot, gpn: int) -> None:
        """Raise unless ``pfn`` is assigned to ``asid``, validated, for guest page ``gpn``."""

    @abc.abstractmethod
    def rmp_reclaim(self, pfn: Pfn) -> None:
        """The frame goes back to the hypervisor."""

    @abc.abstractmethod
    def check_hypervisor_write(self, pfn: Pfn) -> None:
        """Raise when the platform refuses a hypervisor write to frame ``pfn``."""

    @abc.abstractmethod
    def hides_ciphertext(self, pfn: Pfn) -> bool:
        """Whether a hypervisor read of ``pfn`` returns 0xff instead of the ciphertext."""


class EngineWithIntegrity(abc.ABC):
    """Interface: memory integrity. Every line carries a *sideband word* beside it (in the ECC
    bits: not part of the line's data at its physical address) that the memory controller
    writes with each CPU write and checks on each CPU read.

    The machine keeps one ``uint64`` word per line of DRAM and hands the engine the words of
    the lines it reads or writes; what the bits of a word mean is the engine's.
    """

    mac_bits: int
    """Width of each line's MAC."""

    @abc.abstractmethod
    def seal(
        self, slot: KeySlot, addrs: NDArray[np.uint64], ciphertext: NDArray[np.uint8]
    ) -> NDArray[np.uint64]:
        """The sideband words of lines a CPU writes through ``slot``, as ``(n,)``."""

    @abc.abstractmethod
    def initialises(self, slot: KeySlot) -> bool:
        """Whether a frame given to a domain running with ``slot`` is first written with zeros
        through ``slot``, so that its lines pass the domain's checks (TDX: a private page is
        accepted, which initialises it through the TD's KeyID)."""

    @abc.abstractmethod
    def verify(
        self, slot: KeySlot, addrs: NDArray[np.uint64], ciphertext: NDArray[np.uint8],
        sideband: NDArray[np.uint64],
    ) -> NDArray[np.bool_]:
        """Check lines a CPU reads through ``slot`` against their sideband words.

        Returns which lines read as zeros instead of their contents (a line the reader may not
        see, refused without a fault). A line that fails its check is poisoned in ``sideband``
        (a writable view of the machine's words) before the read is refused.

        Raises:
            IntegrityViolation: a line failed its check, or was poisoned before.
        """


class EngineWithAttestation:
    """Interface: a platform security processor measures guest launches and signs attestation
    reports that a remote guest owner can verify. The PSP itself is
    :class:`~testbed.platform.sev.Psp`; the engine only declares that the platform has one."""


class EngineWithSnpAttestation(EngineWithAttestation):
    """Interface: the PSP runs SEV-SNP firmware. Launches are measured with the SNP launch
    digest (SHA-384 over PAGE_INFO records) and reports are the SNP ATTESTATION_REPORT, signed
    by the chip's VCEK; the legacy LAUNCH_MEASURE blob and 208-byte report do not exist."""


_DERIVED: dict[str, type] = {
    "runtime_rotation": EngineWithRuntimeRotation,
    "isolates_guests": EngineWithGuestIsolation,
    "attests": EngineWithAttestation,
    "integrity": EngineWithIntegrity,
}
"""Boolean capabilities and the interface each one follows from."""


# -- the base engine --------------------------------------------------------------------------
class Engine:
    """Base engine: a table of key slots, each holding a cipher or ``None`` (plaintext).

    The boolean capabilities :attr:`runtime_rotation`, :attr:`isolates_guests`,
    :attr:`attests` and :attr:`integrity` follow from the interfaces a class implements; a
    subclass may still set one itself (a SEV platform whose PSP firmware is missing does not
    attest).

    Args:
        keys: the platform RNG.
        reduced_width_bits: use the reduced-width cipher for every key (wear-out experiment).
    """

    name: ClassVar[str] = "none"
    family: ClassVar[CipherFamily] = CipherFamily.XTS
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
    integrity: ClassVar[bool] = False
    """Whether the memory controller keeps a MAC beside every line and checks it on reads."""

    _derived: ClassVar[frozenset[str]] = frozenset()
    """The capabilities this very class derived from its interfaces (not set by hand)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        derived = set()
        for attr, interface in _DERIVED.items():
            if attr not in vars(cls) and not cls._set_by_hand_above(attr):
                setattr(cls, attr, issubclass(cls, interface))
                derived.add(attr)
        cls._derived = frozenset(derived)

    @classmethod
    def _set_by_hand_above(cls, attr: str) -> bool:
        """Whether a class between ``cls`` and :class:`Engine` set ``attr`` itself."""
        for klass in cls.__mro__[1:]:
            if klass is Engine:
                return False
            if attr in vars(klass) and attr not in vars(klass).get("_derived", ()):
                return True
        return False

    def __init__(self, keys: KeySource, reduced_width_bits: int | None = None) -> None:
        self._keys = keys
        self.cipher_kind = CipherKind(self.family, reduced_width_bits)
        self._slots: dict[KeySlot, LineCipher | None] = {HOST: None}
        self._wear: dict[KeySlot, int] = {}

    @classmethod
    def build(cls, keys: KeySource, options: EngineOptions) -> Self:
        """This engine, with the ``options`` that apply to it."""
        return cls(keys, options.reduced_width_bits)

    @property
    def keys(self) -> KeySource:
        """The platform RNG this engine draws its keys from."""
        return self._keys

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

    # -- for engines: programming key slots -------------------------------------------------
    def program_key(self, slot: KeySlot, key: bytes | None = None) -> None:
        """Put a key in ``slot``: ``key`` (data key then tweak key), or a fresh one from the
        platform RNG. The slot's wear counter starts again at zero.

        Raises:
            ConfigError: ``key`` has the wrong size, or is a weak XTS key.
        """
        self._slots[slot] = (self._new_cipher() if key is None
                             else self.cipher_kind.build(key))
        self._wear[slot] = 0

    def share_key(self, slot: KeySlot, source: KeySlot) -> None:
        """``slot`` encrypts with the key now in ``source`` (MKTME's CLEAR_KEY falls back to
        the TME key this way); its wear counter starts again at zero."""
        self._slots[slot] = self._cipher(source)
        self._wear[slot] = 0

    def set_plaintext(self, slot: KeySlot) -> None:
        """Accesses through ``slot`` are not encrypted (MKTME's NO_ENCRYPT, SEV's host)."""
        self._slots[slot] = None
        self._wear[slot] = 0

    def forget_key(self, slot: KeySlot) -> None:
        """``slot`` holds no key any more: an access through it raises ``KeyNotProgrammed``."""
        self._slots.pop(slot, None)

    def holds_key(self, slot: KeySlot) -> bool:
        """Whether ``slot`` was programmed (with a key, or as plaintext)."""
        return slot in self._slots

    def domain_slot(self, kind: str) -> KeySlot:
        """The key slot a new domain of ``kind`` (``process`` or ``guest``) runs with."""
        return HOST

    def release_slot(self, slot: KeySlot) -> None:
        """The domain that used ``slot`` is gone."""

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

    def search_varying(
        self, slot: KeySlot, addr: int, template: bytes, offset: int, grid: BlockGrid,
        target: bytes,
    ) -> tuple[int | None, NDArray[np.uint8]]:
        """The lines of :meth:`encrypt_varying` with the blocks of ``grid``, in order, up to the
        first whose ciphertext is ``target`` (see ``Machine.write_varying_search``). Each line
        written counts as a line of wear; none after the match is written.

        Returns:
            The index of the matching line (``None``: none matched) and the ciphertext of the
            last line written, ``(64,)``.
        """
        line, _ = as_blocks(template, offset, np.zeros((0, 16), dtype=np.uint8))
        cipher = self._cipher(slot)
        if cipher is None:
            return search_by_blocks(_unencrypted, addr, line[0], offset, grid, target)
        index, last = cipher.search_varying(addr, line, offset, grid, target)
        written = grid.count if index is None else index + 1
        self._wear[slot] = self._wear.get(slot, 0) + written * cipher.blocks_per_line
        return index, last

    def decrypt(
        self, slot: KeySlot, addrs: NDArray[np.uint64], lines: NDArray[np.uint8]
    ) -> NDArray[np.uint8]:
        """Lines on their way from DRAM to a CPU using ``slot``."""
        cipher = self._cipher(slot)
        if cipher is None:
            return np.array(lines, dtype=np.uint8, copy=True)
        return cipher.decrypt(addrs, lines)

    def describe(self) -> str:
        """One line for reports."""
        return f"{self.name}: {self.cipher_label}"


def _unencrypted(addr: int, line: NDArray[np.uint8], offset: int,
                 blocks: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """``encrypt_varying`` of a slot without encryption: what is written is what DRAM holds."""
    return np.array(line, dtype=np.uint8).reshape(LINE_SIZE), blocks.copy()


class NoEngine(Engine):
    """No memory encryption: DRAM holds plaintext."""

    name = "none"
