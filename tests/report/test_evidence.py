"""Evidence bytes: hex and ASCII, labelled per attack, only meaningful matches marked."""

from __future__ import annotations

from testbed.report.evidence import GENERIC, LABELS, evidence_views, hex_dump, labels_for
from testbed.results import Evidence

SECRET = b"db-password=Tr0ub4dor&3 (guest)"


def _marked(dump_html: str) -> int:
    return dump_html.count('<mark class="match">')


def test_hex_and_ascii_columns() -> None:
    dump = hex_dump("secret", "Secret", SECRET)
    first = dump.lines[0]
    assert first.offset == "0000"
    assert str(first.cells) == "64 62 2d 70 61 73 73 77  6f 72 64 3d 54 72 30 75"
    assert str(first.text) == "db-password=Tr0u"
    # The last, shorter line keeps the ASCII column under the others.
    last = dump.lines[-1]
    assert len(str(last.cells)) == len(str(first.cells))
    assert str(last.text) == "b4dor&amp;3 (guest)"
    assert str(hex_dump("x", "x", b"\x00\x1b\x7f\xff").lines[0].text) == "...."


def test_a_whole_match_is_marked() -> None:
    dump = hex_dump("recovered", "Recovered", SECRET, SECRET, "the secret")
    assert dump.marked == dump.compared == len(SECRET)
    assert dump.note == "All 31 compared bytes equal the secret at the same position (marked)."
    assert sum(_marked(str(line.cells)) for line in dump.lines) == len(SECRET)
    assert sum(_marked(str(line.text)) for line in dump.lines) == len(SECRET)


def test_coincident_bytes_and_defence_runs_are_not_marked() -> None:
    # Ciphertext that happens to share two lone bytes with the secret, and zeros where the
    # secret has none: nothing worth marking.
    garbage = bytearray(b"\x99" * len(SECRET))
    garbage[3], garbage[20] = SECRET[3], SECRET[20]
    dump = hex_dump("captured", "DRAM", bytes(garbage), SECRET, "the secret")
    assert (dump.equal, dump.marked) == (2, 0)
    assert dump.note == ("2 of 31 bytes equal the secret at the same position; 2 not marked: "
                         "lone bytes (any byte matches 1 time in 256) or runs of one repeated "
                         "value.")
    zeros = hex_dump("r", "r", bytes(8), bytes(8) + b"x", "the secret")
    assert zeros.marked == 0
    # A run of four or more distinct bytes is marked; in a buffer under 8 bytes, two will do.
    half = SECRET[:10] + bytes(21)
    assert hex_dump("r", "r", half, SECRET, "the secret").marked == 10
    torn = hex_dump("r", "r", bytes.fromhex("e8fb440000"), bytes.fromhex("e8fb070000"), "new")
    assert (torn.equal, torn.marked, torn.runs) == (4, 2, 1)


def test_labels_say_what_each_buffer_is() -> None:
    assert labels_for("a-plugin-attack") is GENERIC
    assert set(LABELS) == {"key-wearout", "secretmem-exhaustion", "dirty-page-leak",
                           "torn-live-patch", "attestation", "ciphertext-side-channel"}
    dirty = evidence_views("dirty-page-leak", Evidence(SECRET[:4], bytes(16), SECRET[:4]), {})
    assert [d.label for d in dirty] == [
        "Secret: the guest's key, one bit per interval",
        "Dirty bitmaps the hypervisor read, one per interval (bit i: guest page i)",
        "Bits the hypervisor decoded from the bitmaps"]
    # The bitmaps are not compared with the key: no note, nothing marked.
    assert dirty[1].note == "" and dirty[1].marked == 0
    assert dirty[2].note.startswith("All 4 compared bytes equal the key")


def test_wearout_compares_what_the_victim_read_with_the_attackers_choice() -> None:
    views = evidence_views("key-wearout", Evidence(b"\x01\x02\x03\x04", b"\x55" * 4,
                                                   b"\x7f\x3a\x8a\x00"),
                           {"attacker_target": "7f3a8a00"})
    assert [d.key for d in views] == ["secret", "target", "captured", "recovered"]
    assert views[1].label == "The value the attacker chose for the victim to read"
    assert views[3].note == ("All 4 compared bytes equal the attacker's chosen value at the "
                             "same position (marked).")


def test_an_attestation_report_shows_its_layout() -> None:
    (captured,) = evidence_views("attestation", Evidence(captured=bytes(0xD0)), {})
    assert captured.label == "Attestation report the owner received"
    assert captured.fields[:3] == ("0x00-0x0f mnonce", "0x10-0x2f launch digest",
                                   "0x30-0x33 policy")
    assert captured.fields[-1].startswith("0x40-0xcf signature (by the PEK")


def test_an_snp_report_and_a_launch_measure_blob_show_their_layouts() -> None:
    (snp,) = evidence_views("attestation", Evidence(captured=bytes(0x4A0)),
                            {"evidence": "report", "report_format": "sev-snp"})
    assert "0x50-0x8f report_data (the owner's nonce)" in snp.fields
    assert "0x90-0xbf measurement (SHA-384 launch digest)" in snp.fields
    assert snp.fields[-1].startswith("0x2a0-0x49f signature (by the VCEK")
    (blob,) = evidence_views("attestation", Evidence(captured=bytes(48)),
                             {"evidence": "launch_measure", "report_format": "sev"})
    assert blob.fields == ("0x00-0x1f MEASURE (HMAC-SHA256 under the TIK)",
                           "0x20-0x2f mnonce (chosen by the firmware)")
