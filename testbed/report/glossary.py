"""The report's glossary: the terms its pages use, explained, and links to them from the text.

:data:`TERMS` is the glossary page (``glossary.html``), in its order. :func:`linked` turns a
piece of untrusted text (a reason, a teaching note) into markup in which the first mention of
each term links to its entry; every other character is escaped, so the text cannot add markup
of its own.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["GLOSSARY_PAGE", "TERMS", "Term", "linked"]

GLOSSARY_PAGE = "glossary.html"


@dataclass(frozen=True)
class Term:
    """One glossary entry.

    Attributes:
        id: the entry's anchor on the glossary page (``term-ID``).
        term: the term as the heading shows it.
        mentions: the spellings linked from the pages (matched whole, case as written).
        text: what it means, in this testbed.
        group: the heading the entry sits under.
    """

    id: str
    term: str
    mentions: tuple[str, ...]
    text: str
    group: str

    @property
    def anchor(self) -> str:
        return f"term-{self.id}"


_ENGINES = "Memory-encryption engines"
_INTEL = "Intel TME and MKTME"
_AMD = "AMD SEV and SEV-SNP"
_ATTEST = "SEV attestation"
_KERNEL = "Kernel and devices"
_CRYPTO = "Ciphers"
_REPORT = "Reading the report"

TERMS: tuple[Term, ...] = (
    Term("engine", "Engine", (),
         "The memory-encryption hardware a profile emulates: none (plaintext DRAM), TME, "
         "MKTME, SEV or SEV-SNP. Each column of the outcome matrix is one engine.", _ENGINES),
    Term("interposer", "Bus interposer", ("interposer", "evil DIMM"),
         "A device between the CPU and the memory modules (a DDR interposer, an \"evil "
         "DIMM\") that reads and writes raw DRAM lines. With memory encryption it only ever "
         "sees ciphertext, but it can record it and write old ciphertext back.", _ENGINES),
    Term("tme", "TME (Total Memory Encryption)", ("TME",),
         "Intel's whole-memory encryption: one AES-XTS-128 key, made by the CPU at boot and "
         "never readable by software, encrypts all of DRAM. It protects against someone "
         "reading the memory chips, not against software on the machine. A new key needs a "
         "reboot, which loses the memory's contents.", _INTEL),
    Term("mktme", "MKTME (Multi-Key TME)", ("MKTME",),
         "TME with many keys at once: each page is encrypted with the key its KeyID selects, "
         "so a process or guest can have a key of its own. Keys are programmed with PCONFIG "
         "and can be replaced while the system runs.", _INTEL),
    Term("keyid", "KeyID", ("KeyIDs", "KeyID"),
         "The key number MKTME reads from the upper bits of a physical address. The same "
         "page read through two KeyIDs decrypts with two different keys: through the wrong "
         "one it reads as garbage. KeyID 0 is the TME key that the kernel's own mappings "
         "use.", _INTEL),
    Term("pconfig", "PCONFIG", ("PCONFIG",),
         "The instruction that programs an MKTME key into a KeyID slot: a key given by "
         "software, a random one, no encryption, or clearing the slot. Clearing a slot when "
         "its domain is torn down is what turns leftover data into garbage.", _INTEL),
    Term("sev", "SEV (Secure Encrypted Virtualization)", ("SEV",),
         "AMD's encryption of virtual machines: each guest has its own AES-128 key, chosen by "
         "the security processor and selected by the guest's ASID. The hypervisor can still "
         "read and write the guest's memory, but sees only ciphertext, and nothing checks the "
         "memory's integrity.", _AMD),
    Term("sev-snp", "SEV-SNP (Secure Nested Paging)", ("SEV-SNP",),
         "SEV plus integrity checks through the Reverse Map Table: the hypervisor can no "
         "longer write to a guest's pages or silently remap them. Reading them is not "
         "checked, so the ciphertext stays visible unless ciphertext hiding is on.", _AMD),
    Term("asid", "ASID (address space identifier)", ("ASIDs", "ASID"),
         "The number that names a guest to the CPU. Under SEV it also picks the guest's "
         "encryption key, the way a KeyID does for MKTME.", _AMD),
    Term("c-bit", "C-bit", ("C-bit",),
         "A bit in a guest's own page tables that marks a page private (encrypted with the "
         "guest's key) or shared (plaintext, for devices and the hypervisor to use). Devices "
         "can only DMA to shared pages.", _AMD),
    Term("rmp", "RMP (Reverse Map Table)", ("RMP",),
         "SEV-SNP's table with one entry per 4 KiB page of memory: which guest owns it, "
         "whether it is assigned and whether the guest has validated it. A hypervisor write "
         "to a guest's page faults; a guest access to a page remapped behind the guest's back "
         "fails the RMP check (a nested page fault to the hypervisor).",
         _AMD),
    Term("ciphertext-hiding", "Ciphertext hiding", ("ciphertext hiding",),
         "An SEV-SNP option under which the hypervisor's reads of a guest's pages return "
         "0xff instead of the ciphertext, so that it cannot watch the ciphertext change.",
         _AMD),
    Term("npt", "Nested page table", ("nested page table",),
         "The table the hypervisor keeps for each guest that maps the guest's page numbers to "
         "frames of memory. Under SEV the hypervisor may change it at will; under SEV-SNP the "
         "RMP entry of each frame records the guest page it was validated for, and an access "
         "through an entry the hypervisor changed faults.", _AMD),
    Term("psp", "PSP (platform security processor)", ("PSP",),
         "The separate processor in AMD CPUs that holds the SEV keys, encrypts and measures "
         "a guest's image at launch and signs attestation reports. The hypervisor talks to "
         "it but cannot read its keys.", _ATTEST),
    Term("attestation-report", "Attestation report", ("attestation report",),
         "What the PSP signs for a guest owner: the owner's mnonce, the launch digest and "
         "the guest policy, signed with the PEK (SEV, 208 bytes), or the owner's 64-byte "
         "nonce, the 48-byte measurement, the policy and the VMPL, signed with the VCEK "
         "(SEV-SNP, 1184 bytes). The owner checks the signature, the nonce and the digest "
         "before it trusts the guest with a secret.", _ATTEST),
    Term("launch-digest", "Launch digest (measurement)", ("launch digest", "measurement"),
         "The digest the PSP computes over the image and the VMSA it encrypted at launch: "
         "SHA-256 under SEV, a chain of SHA-384 over one record per page under SEV-SNP. If "
         "the hypervisor changed the image or the initial registers, the digest differs from "
         "the one the owner expects.", _ATTEST),
    Term("vmsa", "VMSA (VM save area)", ("VMSA",),
         "The page holding a guest vCPU's register state (RIP, RSP, control registers) under "
         "SEV-ES and SEV-SNP, encrypted with the guest's key. The initial VMSA is part of the "
         "launch digest, so a hypervisor that moves RIP is caught by attestation.", _ATTEST),
    Term("tik", "TIK (transport integrity key)", ("TIK", "LAUNCH_MEASURE"),
         "A key the guest owner shares with the PSP at launch and the hypervisor never sees. "
         "LAUNCH_MEASURE returns an HMAC under the TIK over the launch digest and policy, "
         "which the owner checks before the guest runs.", _ATTEST),
    Term("vcek", "VCEK (versioned chip endorsement key)", ("VCEK",),
         "The SEV-SNP key that signs attestation reports: unique to one chip and its firmware "
         "version, certified by AMD's ASK and ARK in X.509 certificates.", _ATTEST),
    Term("mnonce", "mnonce", ("mnonce",),
         "A random 16-byte number the guest owner sends with its request and that the "
         "signed report must repeat. A report recorded earlier carries an old nonce, so it "
         "cannot be replayed. It travels in base64.", _ATTEST),
    Term("pek", "PEK (platform endorsement key)", ("PEK",),
         "The key the PSP signs attestation reports with. Its certificate is signed by the "
         "CEK, and the CEK's by AMD's keys (ASK, ARK), so an owner who trusts AMD can check "
         "that a report came from a genuine PSP.", _ATTEST),
    Term("cek", "CEK (chip endorsement key)", ("CEK",),
         "A key unique to one AMD chip, certified by AMD (through the ASK and ARK). It "
         "certifies the PEK. A report signed by any other key fails the chain check.", _ATTEST),
    Term("ark-ask", "ARK and ASK", ("ARK", "ASK"),
         "AMD's root key and the signing key under it, at the top of the certificate chain "
         "ARK -> ASK -> CEK -> PEK. The guest owner gets the ARK from AMD, never from the "
         "host it is checking.", _ATTEST),
    Term("direct-map", "Direct map", ("direct map", "direct-map"),
         "The kernel's mapping of all physical memory at one fixed virtual offset, used for "
         "its own data structures. Under MKTME the kernel's direct map uses KeyID 0, so a "
         "kernel read bug reads other domains' pages as garbage.", _KERNEL),
    Term("secretmem", "secretmem (memfd_secret)", ("secretmem", "secret memory"),
         "Memory a process asks to keep secret: its pages are removed from the kernel's "
         "direct map, so a kernel read bug faults instead of reading them. The pages come "
         "from a reservation made at boot.", _KERNEL),
    Term("pmd", "PMD (2 MiB mapping)", ("PMD",),
         "A 2 MiB page-table mapping. The direct map starts with 1 GiB mappings; removing "
         "a single 4 KiB page splits the 1 GiB mapping around it into 2 MiB ones, then the "
         "2 MiB one into 512 small ones; secretmem's pools take whole 2 MiB chunks so that "
         "only the 1 GiB mapping splits.", _KERNEL),
    Term("init-on-free", "init_on_free", ("init_on_free",),
         "A kernel setting that zeroes every page when it is freed, so that the next owner "
         "of the page finds zeros instead of the previous owner's data.", _KERNEL),
    Term("enomem", "ENOMEM", ("ENOMEM",),
         "The error an allocation gets when no memory is left: here, a secret page fault "
         "when another task has taken the whole secretmem reservation.", _KERNEL),
    Term("vfio", "VFIO and dirty-page tracking", ("VFIO", "dirty bitmap", "dirty bitmaps"),
         "The kernel interface that gives a device to a guest. For live migration the "
         "hypervisor can ask it which guest pages devices wrote (the dirty bitmap, one bit "
         "per page), which reveals access patterns even when every page is encrypted.",
         _KERNEL),
    Term("int3", "text_poke_bp and INT3", ("text_poke_bp", "INT3"),
         "How the kernel changes an instruction while other CPUs may run it: it first puts "
         "a one-byte breakpoint (INT3) over it, syncs the CPUs, writes the rest, syncs, then "
         "writes the first byte. A CPU that hits the breakpoint meanwhile has the new "
         "instruction emulated. Writing the bytes in place instead (plain text_poke) lets a "
         "CPU fetch a torn mix of old and new bytes.", _KERNEL),
    Term("xts", "AES-XTS and XEX", ("XTS", "XEX"),
         "Block-cipher modes that encrypt each 16-byte block with a mask derived from a "
         "tweak. The engines use the physical address as the tweak, so the same plaintext "
         "at two addresses gives two ciphertexts, but at one address always the same one.",
         _CRYPTO),
    Term("tweak", "Tweak", ("tweak",),
         "An extra input to a cipher, next to the key, that changes the result without being "
         "secret. Here it is the physical address; Intel and AMD do not publish the exact "
         "tweak, so this is the model's choice.", _CRYPTO),
    Term("reduced-width", "Reduced-width cipher", ("reduced-width", "REDUCED-WIDTH"),
         "A deliberately weak tweakable cipher of 16 to 32 bits, used only by the key "
         "wear-out scenarios so that collisions appear in seconds instead of after 2^64 "
         "blocks. Its results are extrapolated to 128-bit blocks.", _CRYPTO),
    Term("birthday-bound", "Birthday bound", ("birthday bound",),
         "After q blocks under one n-bit key, the chance that two collide inside the cipher "
         "is about q^2 / 2^(n+1): half-way at about 2^(n/2) blocks. Rotating the key well "
         "before that keeps the chance small.", _CRYPTO),
    Term("control", "Control", (),
         "The same scenario and seed with the threat present and no defence. A defence is "
         "credited (mitigated, blocked) only where the control succeeded.", _REPORT),
    Term("chance", "By chance (2^-32)", ("by chance",),
         "How likely a guess, without the attacker's capability, does as well as the attack "
         "did. A success must be less likely than 2^-32 by chance; otherwise the outcome is "
         "inconclusive.", _REPORT),
    Term("wilson", "95 % interval", ("95 % interval",),
         "Over several trials, the range that holds the true success rate with 95 % "
         "confidence (Wilson's score interval). The attack counts as succeeded when the "
         "interval's lower end is at least one half.", _REPORT),
)
"""Every glossary entry, in the page's order."""


@functools.lru_cache(maxsize=1)
def _pattern() -> tuple[re.Pattern[str], dict[str, Term]]:
    by_mention = {m: t for t in TERMS for m in t.mentions}
    # Longest first, so that SEV-SNP wins over SEV and KeyIDs over KeyID.
    mentions = sorted(by_mention, key=lambda m: (-len(m), m))
    body = "|".join(re.escape(m) for m in mentions)
    return re.compile(rf"(?<![\w-])({body})(?![\w])"), by_mention


def linked(text: str, glossary_href: str) -> Markup:
    """``text``, escaped, with the first mention of each glossary term linked to its entry.

    Args:
        text: untrusted text.
        glossary_href: the glossary page, relative to the page the text is on.
    """
    pattern, by_mention = _pattern()
    seen: set[str] = set()
    parts: list[Markup] = []
    last = 0
    for match in pattern.finditer(text):
        term = by_mention[match.group(1)]
        if term.id in seen:
            continue
        seen.add(term.id)
        parts.append(escape(text[last:match.start()]))
        parts.append(Markup('<a class="term" href="{}#{}">{}</a>').format(
            glossary_href, term.anchor, match.group(1)))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)
