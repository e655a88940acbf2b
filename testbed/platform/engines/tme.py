"""Intel TME and MKTME: AES-XTS-128 with the physical address as tweak; MKTME's PCONFIG."""

from __future__ import annotations

from typing import ClassVar, Self

from ...errors import ConfigError, KeyNotProgrammed
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

__all__ = ["MktmeEngine", "TmeEngine"]


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
    """

    name = "mktme"
    per_domain_keys = True
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
        self._in_use: set[KeySlot] = set()
        self.busy = False
        """Set to make PCONFIG answer DEVICE_BUSY (a key table that cannot be reached)."""

    @classmethod
    def build(cls, keys: KeySource, options: EngineOptions) -> Self:
        return cls(keys, options.reduced_width_bits, keyid_bits=options.keyid_bits)

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
            self.program_key(slot)
        elif cmd is PconfigCommand.CLEAR_KEY:
            # After CLEAR_KEY the KeyID encrypts with the platform TME key.
            self.share_key(slot, HOST)
        else:
            self.set_plaintext(slot)
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
