"""`vidrec flow`: job lists, shards, failures in the summary, skipping complete outputs, the worker pool."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import GOOD_VIDEOS, NUM_FRAMES
from flow_helpers import H, W, run_cli, run_in_session

from vidrec.cli import main
from vidrec.flow import flow_meta, is_complete, load_flow
from vidrec.flow.cli import FlowJob, list_jobs, parse_shard, shard_jobs
from vidrec.io import read_flow_folder

GOOD_IDS = sorted(name.rsplit(".", 1)[0] for name in GOOD_VIDEOS)  # a, b, sub/c
BAD_IDS = ["bad", "empty"]


def _flow(capsys, *args) -> tuple[int, str]:
    rc = main(["flow", *map(str, args)])
    return rc, capsys.readouterr().out


def _mtimes(out, ids) -> dict[str, int]:
    return {i: (out / f"{i}.flow.mkv").stat().st_mtime_ns for i in ids}


# -- job lists -------------------------------------------------------------------------------------------
def test_list_jobs_from_a_folder(video_folder):
    (video_folder / "notes.txt").write_text("not a video")
    (video_folder / "UPPER.MP4").write_bytes(b"")
    jobs = list_jobs(video_folder)
    assert [j.video_id for j in jobs] == sorted(["UPPER", *GOOD_IDS, *BAD_IDS])
    assert all(isinstance(j, FlowJob) and os.path.isfile(j.path) for j in jobs)
    assert {j.video_id: j.path for j in jobs}["sub/c"] == str(video_folder / "sub" / "c.mp4")


def test_list_jobs_from_a_list_file(video_folder, tmp_path):
    lst = tmp_path / "lists" / "train.txt"
    lst.parent.mkdir()
    lst.write_text("# header\n\na.mp4 0\nsub/c.mp4   2  # trailing comment\n  b.mp4\n")
    jobs = list_jobs(lst, video_folder)
    assert [(j.video_id, j.path) for j in jobs] == [
        ("a", str(video_folder / "a.mp4")),
        ("sub/c", str(video_folder / "sub" / "c.mp4")),
        ("b", str(video_folder / "b.mp4")),
    ]
    beside = video_folder / "list.txt"  # without --root: paths are relative to the list's folder
    beside.write_text("a.mp4 1\n")
    assert list_jobs(beside) == [FlowJob(str(video_folder / "a.mp4"), "a")]


def test_list_jobs_of_a_missing_input_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such list file or folder"):
        list_jobs(tmp_path / "missing")


# -- shards ----------------------------------------------------------------------------------------------
def test_parse_shard():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard("3/4") == (3, 4)
    assert parse_shard(None, env={}) == (0, 1)
    assert parse_shard(None, env={"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)  # torchrun
    assert parse_shard("0/2", env={"RANK": "1", "WORLD_SIZE": "2"}) == (0, 2)  # --shard wins
    for bad in ("2/2", "-1/2", "1", "a/b", "1/2/3", "", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_parse_shard_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard(None) == (1, 4)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_and_cover_every_job(count):
    jobs = [FlowJob(f"/v/{i}.mp4", f"cls{i % 3}/v{i}") for i in range(10)][::-1]
    shards = [shard_jobs(jobs, i, count) for i in range(count)]
    ids = [j.video_id for s in shards for j in s]
    assert sorted(ids) == sorted(j.video_id for j in jobs) and len(ids) == len(set(ids))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard_jobs(jobs[::-1], 1 % count, count) == shards[1 % count]  # independent of the input order


# -- end to end ------------------------------------------------------------------------------------------
def test_failures_are_listed_and_the_good_videos_extracted(video_folder, tmp_path, capsys):
    out = tmp_path / "flow"
    rc, text = _flow(capsys, video_folder, "--out", out, "--short-side", 0, "--workers", 1)
    assert rc == 0
    assert "5 videos, 0 already complete, 5 to do" in text
    assert "done: 3 extracted, 0 skipped, 2 failed" in text
    failed = [line.strip() for line in text.splitlines() if "FAILED" in line]
    assert len(failed) == 2
    assert failed[0].startswith("FAILED bad: VideoDecodeError") and str(video_folder / "bad.mp4") in failed[0]
    assert (
        failed[1].startswith("FAILED empty: VideoDecodeError")
        and str(video_folder / "empty.mp4") in failed[1]
    )
    assert "empty (0 bytes)" in failed[1]
    for video_id in GOOD_IDS:
        assert is_complete(out, video_id, bound=20.0, method="dis")
        assert load_flow(out / video_id).shape == (NUM_FRAMES - 1, H, W, 2)
        meta = flow_meta(out / video_id)
        assert (meta["method"], meta["bound"], meta["fps"], meta["num_frames"]) == (
            "dis",
            20.0,
            25.0,
            NUM_FRAMES,
        )
    for video_id in BAD_IDS:
        assert not is_complete(out, video_id) and not (out / f"{video_id}.flow.json").exists()
    assert not list(out.rglob("*.tmp"))
    # the flow has the motion of each video: a moves right, b left, sub/c down (1 px per frame)
    medians = {i: np.median(load_flow(out / i).reshape(-1, 2).astype(float), axis=0) for i in GOOD_IDS}
    step = 255 / 40  # codes per px at bound 20
    np.testing.assert_allclose(medians["a"], [127.5 + step, 127.5], atol=1.5)
    np.testing.assert_allclose(medians["b"], [127.5 - step, 127.5], atol=1.5)
    np.testing.assert_allclose(medians["sub/c"], [127.5, 127.5 + step], atol=1.5)


def test_strict_makes_failures_fatal(video_folder, tmp_path, capsys):
    rc, text = _flow(
        capsys, video_folder, "--out", tmp_path / "o", "--short-side", 0, "--workers", 1, "--strict"
    )
    assert rc == 1 and "2 failed" in text
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.mp4").write_bytes((video_folder / "a.mp4").read_bytes())
    assert _flow(capsys, good, "--out", tmp_path / "o2", "--short-side", 0, "--strict")[0] == 0


def test_a_second_run_skips_complete_outputs(video_folder, tmp_path, capsys):
    out = tmp_path / "flow"
    common = ("--out", out, "--short-side", 0, "--workers", 1)
    _flow(capsys, video_folder, *common)
    before = _mtimes(out, GOOD_IDS)
    rc, text = _flow(capsys, video_folder, *common)
    assert rc == 0
    assert "5 videos, 3 already complete, 2 to do" in text
    assert "done: 0 extracted, 3 skipped, 2 failed" in text
    assert _mtimes(out, GOOD_IDS) == before

    # another bound or method is not the same output: it replaces the old flow only with --overwrite
    assert main(["flow", *map(str, (video_folder, *common, "--bound", 10))]) == 2
    err = capsys.readouterr().err
    assert "made with another --method or --bound" in err and "pass --overwrite" in err
    assert _mtimes(out, GOOD_IDS) == before
    rc, text = _flow(capsys, video_folder, *common, "--bound", 10, "--overwrite")
    assert "0 already complete" in text and "3 extracted" in text
    assert all(is_complete(out, i, bound=10, method="dis") for i in GOOD_IDS)
    assert not any(is_complete(out, i, bound=20) for i in GOOD_IDS)


def test_a_broken_output_is_extracted_again(video_folder, tmp_path, capsys):
    out = tmp_path / "flow"
    common = ("--out", out, "--short-side", 0, "--workers", 1)
    _flow(capsys, video_folder, *common)
    reference = load_flow(out / "a")
    (out / "a.flow.mkv").write_bytes(b"")  # e.g. a rename that never reached the disk
    (out / "b.flow.json").unlink()  # killed between the data and the JSON
    data = (out / "sub" / "c.flow.mkv").read_bytes()
    (out / "sub" / "c.flow.mkv").write_bytes(data[: len(data) // 2])
    (out / "a.flow.mkv.4242.tmp").write_bytes(b"leftover of a killed run")
    rc, text = _flow(capsys, video_folder, *common)
    assert rc == 0 and "0 already complete" in text and "3 extracted" in text
    assert all(is_complete(out, i) for i in GOOD_IDS)
    np.testing.assert_array_equal(load_flow(out / "a"), reference)
    assert not list(out.rglob("*.tmp"))


def test_shards_split_the_work(video_folder, tmp_path, capsys):
    outs = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        rc, text = _flow(
            capsys, video_folder, "--out", out, "--short-side", 0, "--workers", 1, "--shard", f"{i}/2"
        )
        assert rc == 0 and f"shard {i}/2" in text
        outs.append({i for i in GOOD_IDS if is_complete(out, i)})
        assert not any((out / f"{i}.flow.json").exists() for i in GOOD_IDS if i not in outs[-1])
    assert outs[0] and outs[1] and not outs[0] & outs[1] and outs[0] | outs[1] == set(GOOD_IDS)


def test_torchrun_environment_picks_the_shard(video_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "flow"
    rc, text = _flow(capsys, video_folder, "--out", out, "--short-side", 0, "--workers", 1)
    assert rc == 0 and "shard 1/2" in text
    expected = {j.video_id for j in shard_jobs(list_jobs(video_folder), 1, 2)}
    assert {i for i in GOOD_IDS if is_complete(out, i)} == expected & set(GOOD_IDS)


def test_list_file_input_and_resizing(video_folder, tmp_path, capsys):
    lst = tmp_path / "list.txt"
    lst.write_text("a.mp4 0\nsub/c.mp4 1\nbad.mp4 1\n")
    out = tmp_path / "flow"
    rc, text = _flow(capsys, lst, "--root", video_folder, "--out", out, "--short-side", 32, "--workers", 1)
    assert rc == 0 and "3 videos" in text and "2 extracted" in text and "FAILED bad" in text
    assert load_flow(out / "sub" / "c").shape == (NUM_FRAMES - 1, 32, 43, 2)
    assert not (out / "b.flow.json").exists()


def test_denseflow_format(video_folder, tmp_path, capsys):
    out = tmp_path / "flow"
    rc, text = _flow(
        capsys, video_folder, "--out", out, "--short-side", 0, "--workers", 1, "--format", "denseflow"
    )
    assert rc == 0 and "3 extracted" in text
    npy_out = tmp_path / "npy"
    _flow(capsys, video_folder, "--out", npy_out, "--short-side", 0, "--workers", 1)
    for video_id in GOOD_IDS:
        assert is_complete(out, video_id, bound=20, method="dis")
        assert flow_meta(out / video_id)["format"] == "denseflow"
        got = read_flow_folder(out / video_id, range(NUM_FRAMES - 1), layout="xy")
        diff = np.abs(got.astype(np.int16) - load_flow(npy_out / video_id))
        assert diff.mean() < 1.0  # the same flow, through lossy JPEG
    rc, text = _flow(
        capsys, video_folder, "--out", out, "--short-side", 0, "--workers", 1, "--format", "denseflow"
    )
    assert "3 already complete" in text


def test_worker_pool_gives_the_same_outputs(video_folder, tmp_path, capsys):
    serial, pooled = tmp_path / "serial", tmp_path / "pooled"
    _flow(capsys, video_folder, "--out", serial, "--short-side", 0, "--workers", 1)
    # a fresh process, as from the shell: this test process has decoded videos, and forking it hangs
    # (see test_pool_after_decoding_in_the_parent_process)
    proc = run_cli(video_folder, "--out", pooled, "--short-side", 0, "--workers", 2, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "on 2 workers" in proc.stdout and "3 extracted, 0 skipped, 2 failed" in proc.stdout
    assert "FAILED bad" in proc.stdout and "FAILED empty" in proc.stdout
    for video_id in GOOD_IDS:
        np.testing.assert_array_equal(load_flow(pooled / video_id), load_flow(serial / video_id))


def test_pool_after_decoding_in_the_parent_process(video_folder, tmp_path):
    script = (
        "import sys\n"
        "from vidrec.flow import flow_video\n"
        "from vidrec.cli import main\n"
        "flow_video(sys.argv[1], short_side=None)\n"  # the parent decodes a video first
        "sys.exit(main(['flow', sys.argv[2], '--out', sys.argv[3], '--short-side', '0', '--workers', '2']))\n"
    )
    args = [sys.executable, "-c", script, str(video_folder / "a.mp4"), str(video_folder), str(tmp_path / "o")]
    try:
        proc = run_in_session(args, timeout=10)  # ~1 s when it works
    except subprocess.TimeoutExpired:
        pytest.fail("the worker pool hung after the parent process had decoded a video")
    assert proc.returncode == 0 and "3 extracted" in proc.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_raft_without_weights_fails_with_the_weights_message(
    video_folder, tmp_path, monkeypatch, capsys, workers
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    out = tmp_path / "o"
    code = main(["flow", str(video_folder), "--out", str(out), "--method", "raft", "--workers", str(workers)])
    err = capsys.readouterr().err
    assert code == 2 and "vidrec flow: error: RAFT-small weights not found" in err
    assert "vidrec never downloads" in err and "--raft-weights" in err
    assert not list(out.glob("*.flow.npy"))  # it stopped before any work


def test_raft_weights_message_from_the_python_api(tmp_path, monkeypatch):
    from vidrec.flow import FlowEstimator, RaftWeightsMissing

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(RaftWeightsMissing, match="vidrec never downloads"):
        FlowEstimator("raft")
