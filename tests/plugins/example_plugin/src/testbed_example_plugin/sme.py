"""AMD SME: one memory-encryption key for all of DRAM, host included, an example plugin engine.

Source: D. Kaplan, J. Powell, T. Woller, "AMD Memory Encryption", AMD white paper, 2016.
Secure Memory Encryption (SME) encrypts memory with a single AES-128 key that the AMD Secure
Processor generates at random at each boot and that software never sees; the cipher takes an
additional physical-address tweak, so the same plaintext at two addresses gives different
ciphertext. Pages are encrypted where the page tables set the C-bit (Transparent SME encrypts
all of them); this model is SME with every page encrypted.

What it protects: DRAM holds ciphertext, so a cold-boot read or a bus interposer sees no
plaintext. What it does not: every process, every guest and the host kernel use the one key, so
any software read through a mapping of the host decrypts correctly, and the hypervisor sees a
guest's memory in clear (per-guest keys are SEV's addition, built on the same engine).
There is no integrity, and a new key needs a reboot.

The engine uses XEX with the physical-address tweak, the cipher family of the testbed's SEV
model (AMD publishes neither the exact tweak function of SME nor that of SEV).
"""

from __future__ import annotations

from testbed.platform import HOST, CipherFamily, Engine, KeySource

__all__ = ["SmeEngine"]


class SmeEngine(Engine):
    """AMD SME: one AES-128 key made at boot for all memory, host included (XEX, PA tweak)."""

    name = "sme"
    family = CipherFamily.XEX
    encrypts = True
    # No per-domain keys, no interfaces: no KeyIDs, no rotation at run time, no guest
    # isolation, no RMP and no attestation. The capabilities derived from the interfaces
    # (runtime_rotation, isolates_guests, attests) are therefore False.

    def __init__(self, keys: KeySource, reduced_width_bits: int | None = None) -> None:
        super().__init__(keys, reduced_width_bits)
        # The one key, in the host's slot; domain_slot() keeps the base behaviour and hands
        # that slot to every process and guest.
        self.program_key(HOST)
