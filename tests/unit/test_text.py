"""Sanitising untrusted text before it reaches a terminal or report (terminal escape injection)."""

import pytest

from securehub._util.text import clean, has_hidden, one_line, sanitize


def test_ansi_csi_and_osc_sequences_shown_as_inert_escapes() -> None:
    """Red team 11: the user sees that an escape sequence was there (an OSC 52 clipboard write, a colour,
    a title), written as text; no ESC or BEL byte is left."""
    assert clean("a\x1b[31mred\x1b[0m b\x1b]0;title\x07c") == "a\\x1b[31mred\\x1b[0m b\\x1b]0;title\\x07c"
    assert one_line("\x1b]52;c;cm0gLXJmIH4=\x07x") == "\\x1b]52;c;cm0gLXJmIH4=\\x07x"


def test_ansi_csi_and_osc_sequences_removed_whole_without_reveal() -> None:
    assert clean("a\x1b[31mred\x1b[0m b\x1b]0;title\x07c", reveal=False) == "ared bc"


def test_c1_controls_shown_or_removed() -> None:
    assert clean("x\x9b31my") == "x\\x9b31my"
    assert clean("x\x9b31my", reveal=False) == "x31my"


def test_bidi_override_trojan_source_shown_or_removed() -> None:
    assert clean("acme/\u202eliated\u202c") == "acme/\\u202eliated\\u202c"
    assert clean("a\u2066b\u2069c\u200bd\ufeff") == "a\\u2066b\\u2069c\\u200bd\\ufeff"
    assert clean("acme/\u202eliated\u202c", reveal=False) == "acme/liated"
    assert clean("a\u2066b\u2069c\u200bd\ufeff", reveal=False) == "abcd"


HOSTILE = [
    "a\x1b[31mred\x1b[0m b\x1b]0;title\x07c",
    "\x1b]52;c;cm0gLXJmIH4=\x07\x1bP1$r\x1b\\\x9b2J\x00\r\u202e\u2028\ud800\x7f",
    "tab\there\r\nnext\x0bvt\x0cff",
]


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("keep_newlines", [True, False])
@pytest.mark.parametrize("reveal", [True, False])
def test_sanitized_text_is_printable_encodable_and_a_fixed_point(text: str, keep_newlines: bool, reveal: bool) -> None:
    out = sanitize(text, limit=500, keep_newlines=keep_newlines, reveal=reveal)
    allowed_controls = "\n" if keep_newlines else ""
    assert all(ch.isprintable() or ch in allowed_controls for ch in out), repr(out)
    assert not has_hidden(out.replace("\n", "")) and out.encode("utf-8")
    assert sanitize(out, limit=500, keep_newlines=keep_newlines, reveal=reveal) == out


def test_newlines_kept_by_clean_folded_by_one_line() -> None:
    # Merged sanitiser: a tab becomes spaces (no control below U+0020 but \n survives).
    assert clean("a\r\nb\tc") == "a\nb    c"
    assert one_line("a\n  b\tc") == "a b c"


def test_length_capped_hard() -> None:
    # Merged sanitiser: the cap is a hard bound (it was the cap plus a suffix here).
    out = clean("x" * 50, limit=20)
    assert len(out) == 20 and out.startswith("x" * 5) and out.endswith(" ...[truncated]")
    assert clean("x" * 50, limit=3) == "xxx"


def test_unterminated_osc_and_two_char_escapes_removed_whole_without_reveal() -> None:
    # The stricter escape patterns of the former sandbox.messages sanitiser.
    assert clean("a\x1b]8;;http://evil/b", reveal=False) == "a"
    assert clean("a\x1bMb\x1b7c\x1b(0d\x1bce", reveal=False) == "abcde"
    assert clean("a\x1b]8;;http://evil/b") == "a\\x1b]8;;http://evil/b"


def test_single_line_mode_folds_line_breaks_and_shows_invisibles() -> None:
    assert one_line("run\u200b \u2067rm\u2069 -rf\ufeff\u2028next\x07x") == (
        "run\\u200b \\u2067rm\\u2069 -rf\\ufeff next\\x07x"
    )
    assert one_line("run\u200b \u2067rm\u2069 -rf\ufeff\u2028next\x07x", reveal=False) == "run rm -rf next x"
    assert one_line("a\rb\x0bc\x0cd\u2029e") == "a b c d e"
    assert one_line("  padded  ") == "padded"


def test_sandbox_messages_uses_the_same_sanitiser() -> None:
    from securehub.sandbox.wire import messages

    hostile = "a\u200bb\ufeff\x1b[1mc\u2028d"
    assert messages.sanitize_text(hostile) == one_line(hostile)
    assert messages.sanitize_text(hostile, keep_newlines=True) == clean(hostile)


def test_has_hidden_is_true_for_every_character_sanitize_removes_and_for_invisible_format_characters() -> None:
    removed = [
        chr(c)
        for c in range(0x110000)
        if chr(c) not in ("\n", "\t")
        and sanitize(f"a{chr(c)}b", limit=100, keep_newlines=True, reveal=False) != f"a{chr(c)}b"
    ]
    assert removed  # C0, C1, DEL, bidi, zero-width, BOM, U+2028/U+2029 at least
    assert all(has_hidden(ch) for ch in removed)
    assert all(has_hidden(ch) for ch in "\n\t\x1b\u2060\u2061\u2064\u206a\u206f")
    assert not any(has_hidden(ch) for ch in "aZ09-._~:/?#[]@!$&'()*+,;=%ä€中")


@pytest.mark.parametrize("text", ["a\ud800b", "x\udfff", "\udbff\udc00 split pair"])
def test_lone_surrogates_are_removed_and_hidden(text: str) -> None:
    """Red team 8: a child's "\\ud800" escape made str(err) unprintable (UnicodeEncodeError)."""
    one_line(text).encode()
    clean(text).encode()
    clean(text, reveal=False).encode()
    assert "\\ud" in one_line(text) and has_hidden(text)


def test_astral_characters_are_kept() -> None:
    assert one_line("model 😀") == "model 😀" and not has_hidden("😀")
