"""`vidrec flow --short-side`: small videos are never upscaled by default; `--help` shows every default."""

from __future__ import annotations

from vidrec.cli import build_parser, main
from vidrec.flow.cli import flow_short_side
from vidrec.flow.storage import load_flow

NUM_FRAMES = 12  # the `good_videos` fixture's 64x48 videos (tests/flow/conftest.py)


def test_default_keeps_small_videos_native_and_upscale_is_opt_in(good_videos, tmp_path, capsys):
    out = tmp_path / "flow"
    assert main(["flow", str(good_videos), "--out", str(out), "--workers", "1"]) == 0  # default 256
    assert load_flow(out / "a").shape == (NUM_FRAMES - 1, 48, 64, 2)  # native 64x48, not 341x256
    big = tmp_path / "big"
    args = ["flow", str(good_videos), "--out", str(big), "--workers", "1", "--short-side", "96"]
    assert main([*args, "--upscale"]) == 0
    assert load_flow(big / "a").shape == (NUM_FRAMES - 1, 96, 128, 2)
    capsys.readouterr()


def test_short_side_only_shrinks():
    assert flow_short_side(256, 240, 320) is None  # UCF101's 320x240 stays native
    assert flow_short_side(256, 720, 1280) == 256
    assert flow_short_side(256, 240, 320, upscale=True) == 256
    assert flow_short_side(0, 720, 1280) is None


def test_help_shows_every_default():
    parser = build_parser("flow")
    flow = parser._subparsers._group_actions[0].choices["flow"]
    for action in flow._actions:
        if action.option_strings and action.dest not in ("help", "debug"):  # shared flags of every command
            assert "default" in (action.help or "") or "required" in (action.help or ""), action.dest
