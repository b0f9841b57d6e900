"""Sanitising untrusted text before it reaches a terminal or report (terminal escape injection)."""

from securehub._util.text import clean, one_line


def test_ansi_csi_and_osc_sequences_removed() -> None:
    assert clean("a\x1b[31mred\x1b[0m b\x1b]0;title\x07c") == "ared bc"


def test_c1_controls_removed() -> None:
    assert clean("x\x9b31my") == "x31my"


def test_bidi_override_trojan_source_removed() -> None:
    assert clean("acme/\u202eliated\u202c") == "acme/liated"
    assert clean("a\u2066b\u2069c\u200bd\ufeff") == "abcd"


def test_newlines_kept_by_clean_folded_by_one_line() -> None:
    assert clean("a\nb\tc") == "a\nb\tc"
    assert one_line("a\n  b\tc") == "a b c"


def test_length_capped() -> None:
    out = clean("x" * 50, limit=10)
    assert out.startswith("x" * 10) and "40 more characters" in out
