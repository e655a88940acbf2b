"""What the memory-aliasing steps (BadRAM) and the SEV-SNP page-move steps (Heracles) do.

``alias_dimm`` reboots the machine with a DIMM whose SPD was reprogrammed
(:mod:`testbed.platform.mm.aliasing`); ``alias_read`` and ``alias_write`` are the hypervisor's
own reads and writes at the other physical address of a page's cells, which the RMP checks as
that address, not as the cell. ``move_guest_page`` asks the firmware for ``SNP_PAGE_MOVE``
(:mod:`testbed.platform.sev.page_move`); ``feed_guess`` has the guest receive each candidate
into a page of its own and the hypervisor read the ciphertext there.
"""

from __future__ import annotations

from ..errors import AttackError, FirmwareRefusal
from ..platform.mm.aliasing import boot_with_alias
from ..platform.sev.page_move import snp_page_move
from ..types import LINE_SIZE, PAGE_SIZE, Pfn, PhysAddr
from ._args_firmware import AliasDimm, AliasRead, AliasWrite, FeedGuess, MoveGuestPage
from ._guess import search
from ._ops_attack import record
from ._runtime import Runtime
from ._values import Location

__all__ = ["alias_dimm", "alias_read", "alias_write", "feed_guess", "move_guest_page"]

_HIDDEN = b"\xff" * LINE_SIZE
"""What a read through the hypervisor's mapping returns of a line the firmware hides."""


def alias_dimm(rt: Runtime, args: AliasDimm) -> None:
    m = rt.reboot()
    action = "reprograms the DIMM's SPD to report twice its capacity and reboots"
    try:
        alias = boot_with_alias(m.memory, m.allocator, check=m.mitigations.alias_check)
    except FirmwareRefusal as exc:
        rt.note(action, detail=f"alias_check=on: {exc}")
        raise
    rt.note(action, alias.first_frame * PAGE_SIZE,
            f"the DIMM ignores address bit {alias.bit}; the hypervisor keeps the "
            f"{alias.frames} alias frames from frame {alias.first_frame} on for itself")


def _alias(rt: Runtime, pa: PhysAddr, length: int) -> PhysAddr:
    other = rt.machine.memory.alias_of(pa)
    if other is None or rt.machine.memory.alias_of(pa + max(length, 1) - 1) is None:
        raise AttackError(f"{pa:#x} has no alias: the DIMM decodes every address on its own")
    return PhysAddr(other)


def alias_read(rt: Runtime, args: AliasRead) -> bytes:
    pa, loc = rt.place(args)
    length = rt.length(args, loc)
    other = _alias(rt, pa, length)
    data = rt.machine.hypervisor_read(other, length)
    record(rt, data)
    rt.note("reads the page's cells through their alias, with its own mapping", other,
            f"alias of {pa:#x}; {len(data)} bytes")
    return data


def alias_write(rt: Runtime, args: AliasWrite) -> None:
    pa, _ = rt.place(args)
    data = rt.data(args.data)
    if data is None:
        rt.note(f"has nothing to write ({args.data} holds no value)", pa)
        return
    other = _alias(rt, pa, len(data))
    rt.note("writes the page's cells through their alias, with its own mapping", other,
            f"alias of {pa:#x}; {len(data)} bytes")
    rt.machine.hypervisor_write(other, data)


def move_guest_page(rt: Runtime, args: MoveGuestPage) -> Location:
    pa, loc = rt.resolve(args.address, args.page, 0)
    if args.page >= len(loc.gpns):
        raise AttackError(f"{args.address} is not a guest page")
    gpn = loc.gpns[args.page]
    if args.to is None:
        dst = rt.machine.allocator.peek()
    else:
        to = rt.location(args.to)
        if args.to_page >= len(to.addrs):
            raise AttackError(f"{args.to} has no page {args.to_page}")
        dst = Pfn(to.addrs[args.to_page] // PAGE_SIZE)
    rt.note(f"asks the firmware to move guest page {gpn} to frame {dst} (SNP_PAGE_MOVE)", pa)
    new = PhysAddr(snp_page_move(rt.machine, loc.domain, gpn, dst) + pa % PAGE_SIZE)
    single = len(loc.addrs) == 1
    return Location((new,), loc.domain, loc.size if single else PAGE_SIZE, (gpn,),
                    loc.data if single else None)


def feed_guess(rt: Runtime, args: FeedGuess) -> bytes | None:
    pa, loc = rt.place(args)
    line = PhysAddr(pa - pa % LINE_SIZE)
    # What the hypervisor's mapping shows of the page: the ciphertext, or 0xff where the
    # firmware hides it; one read tells which for every write to come. A captured target that
    # is the hidden pattern carries no information either: every write would "match" it.
    sees_ciphertext = rt.machine.hypervisor_read(line, LINE_SIZE) == rt.machine.dram(line,
                                                                                       LINE_SIZE)
    captured = rt.data(args.target)
    blind = not sees_ciphertext or captured == _HIDDEN
    found, tried, space = search(rt, args, loc.domain, pa, blind=blind)
    if tried is None:
        rt.note(f"has no captured line in {args.target} to compare with", pa)
        return None
    if blind:
        what = ("the line it captured reads as 0xff" if captured == _HIDDEN else
                "every line of the page reads as 0xff through its mapping")
        rt.note(f"has the guest receive candidates into its page, but {what} (ciphertext "
                f"hiding): nothing to compare, no match", pa, f"{space} candidates")
        return None
    result = "a match" if found is not None else "no match"
    rt.note(f"has the guest receive candidates into its page and compares {tried} "
            f"ciphertexts through its own mapping: {result}", pa, f"{space} candidates")
    return found
