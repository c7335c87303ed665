"""Off a terminal, progress is a few whole lines, never carriage-return frames (issue 8, point 7)."""

from __future__ import annotations

import io

from vidrec.cli import main
from vidrec.progress import LineProgress, progress


def test_a_bar_into_a_file_prints_a_line_per_ten_percent():
    out = io.StringIO()
    bar = progress(total=1000, desc="work", file=out, mininterval=0)
    assert isinstance(bar, LineProgress)
    for _ in range(1000):
        bar.update()
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert len(lines) == 10 and lines[-1].startswith("work: 100%") and "1000/1000" in lines[-1]
    assert [line.split("%")[0].split()[-1] for line in lines] == [str(p) for p in range(10, 101, 10)]


def test_a_transient_bar_prints_only_its_end_and_a_stopped_one_its_count():
    out = io.StringIO()
    for _ in progress(range(50), desc="eval", leave=False, file=out, mininterval=0):
        pass
    assert out.getvalue().count("\n") == 1 and "50/50" in out.getvalue()
    out = io.StringIO()
    bar = progress(total=100, desc="cut", file=out, mininterval=0)
    bar.update(15)
    bar.update(2)
    bar.close()
    assert out.getvalue().splitlines()[-1].startswith("cut:  17%")


def test_synth_log_has_no_carriage_returns(tmp_path, capsys):
    assert (
        main(["synth", "--out", str(tmp_path / "d"), "--per-class", "2", "--size", "16", "--frames", "4"])
        == 0
    )
    err = capsys.readouterr().err
    assert "\r" not in err and 1 <= len(err.splitlines()) <= 11, err


def test_a_terminal_still_gets_a_redrawn_bar(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = progress(total=3, file=Tty())
    assert not isinstance(bar, LineProgress)
    bar.close()
