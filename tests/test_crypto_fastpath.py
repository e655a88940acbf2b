"""The same-address fast path of the XTS engine gives exactly the general path's bytes."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from testbed.crypto import XtsLineCipher

KEY = bytes(range(32))


def per_line(key: bytes, addr: int, lines: NDArray[np.uint8]) -> NDArray[np.uint8]:
    out = []
    for line in lines:
        enc = Cipher(algorithms.AES(key), modes.XTS(addr.to_bytes(16, "little"))).encryptor()
        out.append(np.frombuffer(enc.update(line.tobytes()) + enc.finalize(), dtype=np.uint8))
    return np.stack(out)


@settings(max_examples=60, deadline=None)
@given(
    addr=st.integers(0, 2**40).map(lambda a: a * 64),
    count=st.integers(2, 40),
    varying=st.sets(st.integers(0, 3)),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_address_batch_equals_openssl(addr: int, count: int, varying: set[int],
                                          seed: int) -> None:
    rng = np.random.default_rng(seed)
    lines = np.repeat(rng.integers(0, 256, (1, 64), dtype=np.uint8), count, axis=0)
    for j in varying:  # some 16-byte blocks differ between lines, the others are constant
        lines[:, 16 * j : 16 * j + 16] = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    cipher = XtsLineCipher(KEY)
    addrs = np.full(count, addr, dtype=np.uint64)
    ct = cipher.encrypt(addrs, lines)
    assert (ct == per_line(KEY, addr, lines)).all()
    assert (cipher.decrypt(addrs, ct) == lines).all()
