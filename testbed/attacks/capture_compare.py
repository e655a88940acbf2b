"""Capture and delayed compare (dictionary attack on a low-entropy secret).

Threat: an interposer captures the ciphertext of a victim's PIN at a known physical address;
once the attacker owns that address it writes candidate plaintexts until the ciphertext on the
bus equals the captured one. XTS ties ciphertext to key and address only, so with a shared key
each candidate is a test. Secrets with little entropy fall fast.
Source: MKTME mitigations document, "Cross-Domain Capture and Delayed Compare Attack".
Preconditions: capabilities ``bus_interposer`` and ``chosen_plaintext``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from ..errors import AttackError
from ..types import LINE_SIZE, PAGE_SIZE
from ._base import Attack, AttackContext, AttackParams, Verdict, judge_bytes

__all__ = ["CaptureCompare", "first_match", "pin_lines"]

PREFIX = b"PIN:"
MAX_DIGITS = 8
MAX_BATCHES = 10_000


class CaptureCompareParams(AttackParams):
    victim: Literal["process", "guest"] = "guest"
    attacker: Literal["process", "guest"] = "guest"
    pin_digits: int = Field(4, ge=1, le=MAX_DIGITS, description="decimal digits of the PIN")
    batch: int = Field(65536, ge=1, le=1 << 20, description="candidates per engine call")

    @model_validator(mode="after")
    def _bounded_calls(self) -> CaptureCompareParams:
        calls = -(-(10**self.pin_digits) // self.batch)
        if calls > MAX_BATCHES:
            raise ValueError(f"10^{self.pin_digits} candidates in batches of {self.batch} is "
                             f"{calls} engine calls; the limit is {MAX_BATCHES} (raise batch)")
        return self


_DIGITS3 = np.array([[ord(c) for c in f"{i:03d}"] for i in range(1000)], dtype=np.uint8)


def pin_lines(first: int, count: int, digits: int) -> NDArray[np.uint8]:
    """Lines ``PIN:<digits>`` zero-padded to 64 bytes for candidates ``first .. first+count-1``."""
    values = np.arange(first, first + count, dtype=np.int64)
    lines = np.zeros((count, LINE_SIZE), dtype=np.uint8)
    lines[:, : len(PREFIX)] = np.frombuffer(PREFIX, dtype=np.uint8)
    end = len(PREFIX) + digits
    while end > len(PREFIX):  # three digits at a time, from the right, by table lookup
        take = min(3, end - len(PREFIX))
        lines[:, end - take : end] = _DIGITS3[values % 1000, 3 - take :]
        values //= 1000
        end -= take
    return lines


def first_match(on_bus: NDArray[np.uint8], captured: NDArray[np.uint8]) -> int | None:
    """Index of the first line equal to ``captured`` (8 bytes screen, the whole line decides)."""
    words = on_bus.view("<u8")
    target = captured.view("<u8")
    for i in np.flatnonzero(words[:, 0] == target[0]):
        if bool((words[i] == target).all()):
            return int(i)
    return None


class CaptureCompare(Attack):
    kind = "capture-compare"
    title = "Capture and delayed compare (dictionary)"
    capabilities = ("bus_interposer", "chosen_plaintext")
    Params = CaptureCompareParams

    def run(self, ctx: AttackContext, params: CaptureCompareParams) -> Verdict:
        m, log = ctx.machine, ctx.log
        digits = params.pin_digits
        space = 10**digits
        pin = int(ctx.rng.integers(0, space))
        secret_line = pin_lines(pin, 1, digits)[0]
        secret = secret_line[: len(PREFIX) + digits].tobytes()
        victim = m.create_domain(params.victim, "victim")
        pa = m.alloc_page(victim)
        m.write(victim, pa, secret_line.tobytes())
        log.secret, log.address = secret, pa
        log.step("victim", f"stores a {digits}-digit PIN at a known address", address=pa)
        captured = np.frombuffer(m.bus.read(pa, LINE_SIZE), dtype=np.uint8)
        log.captured = captured.tobytes()
        log.step("attacker", "captures the PIN's ciphertext line", "bus_interposer", pa)
        m.destroy_domain(victim)
        attacker = m.create_domain(params.attacker, "attacker")
        frame = m.alloc_page(attacker)
        log.metrics.update(dictionary_size=space, entropy_bits=digits * math.log2(10))
        if frame != pa - pa % PAGE_SIZE:
            raise AttackError(f"the attacker did not get frame {pa // PAGE_SIZE} back "
                              f"(got {frame // PAGE_SIZE})")
        log.step("attacker", "owns the address; writes candidates and watches the bus",
                 "chosen_plaintext", pa, f"{attacker.kind.value} with key slot {attacker.slot}")
        guesses = 0
        for first in range(0, space, params.batch):
            count = min(params.batch, space - first)
            candidates = pin_lines(first, count, digits)
            on_bus = m.write_sequence(attacker, pa, candidates)
            hit = first_match(on_bus, captured)
            if hit is not None:
                guesses += hit + 1
                log.recovered = candidates[hit, : len(secret)].tobytes()
                break
            guesses += count
        log.metrics["guesses"] = guesses
        found = "a match" if log.recovered is not None else "no match"
        log.step("attacker", f"compared {guesses} candidate ciphertexts: {found}",
                 "bus_interposer", pa)
        return judge_bytes(secret, log.recovered, "PIN")
