"""Progress on a terminal and in a log (brainvq.progress): in a log a long step prints one line
when it ends, on stderr, and nothing else (no redraws, nothing on stdout); a disabled bar or a
step that fails prints nothing; TTY_INTERACTIVE decides as rich documents."""

from __future__ import annotations

import pytest

from brainvq.progress import Bar, interactive, progress


def test_in_a_log_a_step_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert not interactive()  # pytest's capture is not a terminal
    items = list(progress(range(5), 5, "decoding slices"))
    assert items == [0, 1, 2, 3, 4]
    with Bar("level classifier", 4) as bar:
        for epoch in range(2):
            bar.advance(2)
            bar.describe(f"level classifier epoch {epoch + 1}/2 loss 0.5")
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 2 and "\r" not in out.err, out.err
    assert lines[0].startswith("decoding slices: 5/5 in ") and lines[0].endswith(" s")
    assert lines[1].startswith("level classifier epoch 2/2 loss 0.5: 4/4 in ")


def test_a_disabled_or_failed_step_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(3), 3, "quiet", enabled=False)) == [0, 1, 2]
    with pytest.raises(ValueError, match="broken"), Bar("failing", 3) as bar:
        bar.advance()
        raise ValueError("broken")
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False)])
def test_tty_interactive_decides(
    value: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_INTERACTIVE", value)
    monkeypatch.setenv("TTY_COMPATIBLE", value)
    assert interactive() is expected
