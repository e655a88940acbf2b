"""Intel TME and MKTME: AES-XTS-128 with the physical address as tweak; MKTME's PCONFIG.

PCONFIG follows the MKTME enabling series that the MKTME seed documents (K. Shutemov, A.
Schofield, "[PATCH, RFC 00/62] Intel MKTME enabling", May 2019): the MKTME_KEY_PROGRAM commands
and return codes of ``arch/x86/include/asm/intel_pconfig.h`` (SET_KEY_RANDOM may answer
ENTROPY_ERROR, "Insufficient entropy"), and the kernel side of "[PATCH, RFC 29/62] keys/mktme:
Program MKTME keys into the platform hardware" (``mktme_program_all_keytables``): ENTROPY_ERROR
and DEVICE_BUSY are retried, at most 10 times in all, any other code fails at once, and a key
that could not be programmed fails the request.

The model's choice: the entropy source is deterministic. With ``entropy_failures`` = n, every
SET_KEY_RANDOM answers ENTROPY_ERROR n times in a row, then succeeds (n = 0: it never fails); Intel
does not publish how often the hardware's source runs dry, so no failure rate could be sourced.
Since the kernel stops after :data:`PCONFIG_ATTEMPTS` attempts, n ranges over 0 ..
:data:`PCONFIG_ATTEMPTS`, the values with distinct meanings: 0 .. 9 program every key after n
retries (the timeline shows them), 10 fails the first key request; any larger n would fail the
same way, so it is refused. A key request that meets ENTROPY_ERROR on all its attempts raises
:class:`~testbed.errors.PlatformFailure`: the platform failed, it refused nobody, so a run that
meets it is an ``error``, never ``blocked``.

No free KeyID for a new domain is a resource running out, not a check that refuses someone: it
raises :class:`~testbed.errors.PlatformFailure` too (an ``error`` run, whoever meets it).
"""

from __future__ import annotations

from typing import ClassVar, Self

from ...errors import ConfigError, KeyNotProgrammed, PlatformFailure
from ...types import KeySlot
from .base import (
    AES_XTS_128,
    HOST,
    Engine,
    EngineOptions,
    EngineWithKeyIds,
    EngineWithRuntimeRotation,
    PconfigCommand,
    PconfigStatus,
)
from .keys import KeySource

__all__ = ["PCONFIG_ATTEMPTS", "MktmeEngine", "TmeEngine"]

PCONFIG_ATTEMPTS = 10
"""Times the kernel executes PCONFIG for one key before it gives up
(``mktme_program_all_keytables``: ``retries = 10``)."""
_RETRIED = (PconfigStatus.ENTROPY_ERROR, PconfigStatus.DEVICE_BUSY)
"""Return codes the kernel retries ("Device Busy or Insufficient Entropy ... will be retried")."""


class TmeEngine(Engine):
    """Intel TME: one AES-XTS-128 key made at boot, used for all memory. Rotation needs a reboot."""

    name = "tme"
    encrypts = True

    def __init__(self, keys: KeySource, reduced_width_bits: int | None = None) -> None:
        super().__init__(keys, reduced_width_bits)
        self.program_key(HOST)


class MktmeEngine(TmeEngine, EngineWithKeyIds, EngineWithRuntimeRotation):
    """Intel MKTME: KeyIDs in the upper physical-address bits, keys programmed with PCONFIG.

    Args:
        keyid_bits: physical-address bits used for the KeyID: KeyIDs ``1 .. 2**bits - 1``
            are software-programmable; KeyID 0 is the TME key.
        entropy_failures: SET_KEY_RANDOM answers ENTROPY_ERROR this many times in a row
            before each success (0: never).
    """

    name = "mktme"
    per_domain_keys = True
    MAX_KEYID_BITS: ClassVar[int] = 15
    MAX_ENTROPY_FAILURES: ClassVar[int] = PCONFIG_ATTEMPTS

    def __init__(
        self, keys: KeySource, reduced_width_bits: int | None = None, keyid_bits: int = 6,
        entropy_failures: int = 0,
    ) -> None:
        if not 1 <= keyid_bits <= self.MAX_KEYID_BITS:
            raise ConfigError(
                f"keyid_bits: must be 1..{self.MAX_KEYID_BITS}, got {keyid_bits}"
            )
        if not 0 <= entropy_failures <= self.MAX_ENTROPY_FAILURES:
            raise ConfigError(f"pconfig_entropy_failures: must be "
                              f"0..{self.MAX_ENTROPY_FAILURES}, got {entropy_failures}")
        super().__init__(keys, reduced_width_bits)
        self.keyid_bits = keyid_bits
        self.max_keyid = (1 << keyid_bits) - 1
        self._in_use: set[KeySlot] = set()
        self.busy = False
        """Set to make PCONFIG answer DEVICE_BUSY (a key table that cannot be reached)."""
        self.entropy_failures = entropy_failures
        self._entropy_misses = 0
        """ENTROPY_ERROR answers since the last SET_KEY_RANDOM that succeeded."""
        self.pconfig_retries = 0
        """PCONFIG executions the kernel repeated after ENTROPY_ERROR or DEVICE_BUSY."""

    @classmethod
    def build(cls, keys: KeySource, options: EngineOptions) -> Self:
        return cls(keys, options.reduced_width_bits, keyid_bits=options.keyid_bits,
                   entropy_failures=options.pconfig_entropy_failures)

    def pconfig(
        self,
        command: int,
        keyid: int,
        key: bytes | None = None,
        enc_alg: int = AES_XTS_128,
    ) -> PconfigStatus:
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
                self.program_key(slot, key)
            except ConfigError:
                return PconfigStatus.INVALID_PROG_CMD
        elif cmd is PconfigCommand.SET_KEY_RANDOM:
            if self._entropy_misses < self.entropy_failures:
                self._entropy_misses += 1
                return PconfigStatus.ENTROPY_ERROR
            self._entropy_misses = 0
            self.program_key(slot)
        elif cmd is PconfigCommand.CLEAR_KEY:
            # After CLEAR_KEY the KeyID encrypts with the platform TME key.
            self.share_key(slot, HOST)
        else:
            self.set_plaintext(slot)
        return PconfigStatus.PROG_SUCCESS

    def program(self, command: PconfigCommand, keyid: KeySlot) -> None:
        """The kernel programs one KeyID (``mktme_program_all_keytables``): PCONFIG again after
        ENTROPY_ERROR or DEVICE_BUSY, :data:`PCONFIG_ATTEMPTS` times at most.

        Raises:
            KeyNotProgrammed: PCONFIG refused the request, or stayed busy.
            PlatformFailure: the entropy source failed every attempt.
        """
        for attempt in range(1, PCONFIG_ATTEMPTS + 1):
            status = self.pconfig(command, keyid)
            if status is PconfigStatus.PROG_SUCCESS:
                return
            if status not in _RETRIED:
                break
            if attempt < PCONFIG_ATTEMPTS:
                self.pconfig_retries += 1
        what = "" if command is PconfigCommand.SET_KEY_RANDOM else f" {command.name}"
        if status is PconfigStatus.ENTROPY_ERROR:
            raise PlatformFailure(
                f"PCONFIG{what} failed for KeyID {keyid}: ENTROPY_ERROR (insufficient entropy) "
                f"on all {PCONFIG_ATTEMPTS} attempts; the key was not programmed")
        raise KeyNotProgrammed(f"PCONFIG{what} failed for KeyID {keyid}: {status.name}")

    def domain_slot(self, kind: str) -> KeySlot:
        for keyid in map(KeySlot, range(1, self.max_keyid + 1)):
            if keyid not in self._in_use:
                self.program(PconfigCommand.SET_KEY_RANDOM, keyid)
                self._in_use.add(keyid)
                return keyid
        # Running out of KeyIDs refuses nobody on purpose: a failed run, never a block.
        raise PlatformFailure(f"no free KeyID (all {self.max_keyid} in use)")

    def release_slot(self, slot: KeySlot) -> None:
        if slot in self._in_use:
            # On failure the key stays loaded: keep the KeyID reserved rather than hand it out.
            self.program(PconfigCommand.CLEAR_KEY, slot)
            self._in_use.discard(slot)

    def rotate(self, slot: KeySlot) -> None:
        self.program(PconfigCommand.SET_KEY_RANDOM, slot)
