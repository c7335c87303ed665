"""Checkpoints: bit-exact round trip, atomic writes, pickles refused, rebuilding a model for inference."""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vidrec.engine.checkpoint as C
from vidrec.engine.config import load_config
from vidrec.engine.schema import config_to_dict

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test-local plug-in module `tinyvid`, whatever pytest's import mode
    sys.path.insert(0, str(HERE))
TinyNet = importlib.import_module("tinyvid").TinyNet


def _trained(name: str) -> tuple[TinyNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = TinyNet(3)
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if name == "sgd"
        else torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    )
    for _ in range(3):
        model(torch.rand(2, 4, 3, 8, 8)).sum().backward()
        opt.step()
    return model, opt


def _ckpt(model, opt, **kw) -> C.Checkpoint:
    cfg = load_config(None, ["data.train_list=t.txt", "model.name=tinyvid:tiny_net"])
    return C.Checkpoint(
        model=model.state_dict(),
        config=config_to_dict(cfg),
        class_names=["a", "b", "c"],
        optimizer=opt.state_dict(),
        rng=C.capture_rng(),
        **kw,
    )


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_round_trip_is_bit_exact(tmp_path, optim):
    model, opt = _trained(optim)
    ckpt = _ckpt(
        model,
        opt,
        epoch=2,
        step_in_epoch=5,
        global_step=17,
        best_metric=0.75,
        sampler={"seed": 3},
        scheduler={"global_step": 17},
        metrics={"val_top1": 0.5},
    )
    back = C.load_checkpoint(C.save_checkpoint(tmp_path / "x.safetensors", ckpt))
    assert back.model.keys() == ckpt.model.keys()
    assert all(torch.equal(back.model[k], v) for k, v in ckpt.model.items())
    sd, sd2 = opt.state_dict(), back.optimizer
    assert sd2["param_groups"] == [
        dict(g, betas=list(g["betas"])) if "betas" in g else g for g in sd["param_groups"]
    ]
    for idx, state in sd["state"].items():
        for key, value in state.items():
            assert torch.equal(sd2["state"][idx][key], value), (idx, key)
    assert (back.epoch, back.step_in_epoch, back.global_step, back.best_metric) == (2, 5, 17, 0.75)
    assert (
        back.class_names == ["a", "b", "c"]
        and back.sampler == {"seed": 3}
        and back.metrics == {"val_top1": 0.5}
    )
    # a fresh optimiser loaded from the file takes the same next step
    model2, _ = TinyNet(3), None
    model2.load_state_dict(back.model)
    opt2 = type(opt)(model2.parameters(), lr=1.0)
    opt2.load_state_dict(sd2)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        torch.manual_seed(1)
        m(torch.rand(2, 4, 3, 8, 8)).sum().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))


def test_rng_states_restore(tmp_path):
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    model, opt = _trained("sgd")
    path = C.save_checkpoint(tmp_path / "r.safetensors", _ckpt(model, opt))
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    C.restore_rng(C.load_checkpoint(path).rng)
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    model, opt = _trained("sgd")
    path = C.save_checkpoint(tmp_path / "last.safetensors", _ckpt(model, opt, global_step=1))
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(C, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        C.save_checkpoint(path, _ckpt(model, opt, global_step=2))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_killed_writer_leaves_no_partial_target(tmp_path):
    """SIGKILL while the temp file is being synced: the target is still the complete old checkpoint."""
    model, opt = _trained("sgd")
    path = C.save_checkpoint(tmp_path / "last.safetensors", _ckpt(model, opt, global_step=1))
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(HERE)!r})
        import torch, vidrec.engine.checkpoint as C
        from tinyvid import TinyNet
        def slow_fsync(fd):
            open({str(marker)!r}, "w").close(); time.sleep(60)
        C.os.fsync = slow_fsync
        ckpt = C.Checkpoint(model=TinyNet(3).state_dict(), config={{}}, class_names=[], global_step=2)
        C.save_checkpoint({str(path)!r}, ckpt)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the writer never reached fsync"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert C.load_checkpoint(path).global_step == 1


def test_pickle_is_refused_with_a_clear_message(tmp_path):
    model, _ = _trained("sgd")
    pth = tmp_path / "model.pth"
    torch.save(model.state_dict(), pth)
    with pytest.raises(C.CheckpointError, match="pickled PyTorch file.*never unpickles"):
        C.load_checkpoint(pth)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(C.CheckpointError, match="not a .safetensors file"):
        C.load_checkpoint(junk)


def test_load_for_inference_rebuilds_the_model(tmp_path):
    model, opt = _trained("sgd")
    path = C.save_checkpoint(tmp_path / "best.safetensors", _ckpt(model, opt))
    rebuilt, cfg, names = C.load_for_inference(path, "cpu", factory="tinyvid:tiny_net")
    assert not rebuilt.training and names == ["a", "b", "c"] and cfg.model.name == "tinyvid:tiny_net"
    x = torch.rand(2, 4, 3, 8, 8)
    assert torch.equal(rebuilt(x), model.eval()(x))


# ----------------------------------------------------------------------------- gaps mutation testing found


def test_missing_or_unexpected_keys_alone_are_refused():
    model, _ = _trained("sgd")
    state = dict(model.state_dict())
    missing = dict(state)
    del missing["head.bias"]
    with pytest.raises(C.CheckpointError, match=r"missing \['head.bias'\], unexpected \[\]"):
        C.load_model_state(TinyNet(3), missing, source="m.safetensors")
    extra = dict(state, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(C.CheckpointError, match=r"missing \[\], unexpected \['extra.weight'\]"):
        C.load_model_state(TinyNet(3), extra, source="m.safetensors")
    fresh = TinyNet(3)
    C.load_model_state(fresh, state, source="m.safetensors")  # an exact match loads
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_scheduler_and_empty_optimizer_round_trip(tmp_path):
    model, _ = _trained("sgd")
    ckpt = C.Checkpoint(
        model=model.state_dict(), config={}, class_names=["a"], scheduler={"name": "cosine", "global_step": 9}
    )
    back = C.load_checkpoint(C.save_checkpoint(tmp_path / "s.safetensors", ckpt))
    assert back.scheduler == {"name": "cosine", "global_step": 9}
    assert back.optimizer is None and back.rng is None and back.best_metric is None


def test_numpy_cached_gaussian_survives(tmp_path):
    """numpy's legacy generator caches the second Box-Muller value: (has_gauss, cached) must round-trip."""
    np.random.seed(3)
    np.random.standard_normal()  # leaves one cached Gaussian
    rng = C.capture_rng()
    assert rng["numpy"][3] == 1
    model, _ = _trained("sgd")
    path = C.save_checkpoint(
        tmp_path / "g.safetensors", C.Checkpoint(model={}, config={}, class_names=[], rng=rng)
    )
    expected = np.random.standard_normal(3)
    np.random.seed(99)
    C.restore_rng(C.load_checkpoint(path).rng)
    assert np.array_equal(np.random.standard_normal(3), expected)


def test_nested_output_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "last.safetensors"
    C.save_checkpoint(path, C.Checkpoint(model={"w": torch.ones(2)}, config={}, class_names=["x"]))
    assert torch.equal(C.load_checkpoint(path).model["w"], torch.ones(2))


def test_temp_files_of_dead_writers_are_removed(tmp_path):
    path = tmp_path / "last.safetensors"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".last.safetensors.tmp-{int(dead.stdout)}"
    stale.write_bytes(b"half")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # still writing
    try:
        live = tmp_path / f".last.safetensors.tmp-{writer.pid}"
        live.write_bytes(b"busy")
        other = tmp_path / f".best.safetensors.tmp-{int(dead.stdout)}"
        other.write_bytes(b"other file")
        C.save_checkpoint(path, C.Checkpoint(model={}, config={}, class_names=[]))
        assert not stale.exists() and live.exists() and other.exists()
        assert writer.poll() is None  # probing a writer never signals it
    finally:
        writer.kill()
        writer.wait()


def test_cuda_generator_states_are_captured_stored_and_restored_only_where_cuda_is(tmp_path, monkeypatch):
    """The CUDA branch of the RNG helpers, on a CPU-only machine: torch.cuda's functions stand in."""
    states = [torch.arange(8, dtype=torch.uint8), torch.arange(8, 16, dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert C.capture_rng()["cuda"] == []  # no CUDA: nothing asked of torch.cuda
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rng = C.capture_rng()
    assert [s.tolist() for s in rng["cuda"]] == [s.tolist() for s in states]
    rank1 = dict(rng, cuda=[states[1] + 1])  # a second rank of a distributed run, one GPU
    ckpt = C.Checkpoint(model={}, config={}, class_names=[], rng=rng, rank_rngs=[rank1])
    tensors, _ = C.read_tensors(C.save_checkpoint(tmp_path / "c.safetensors", ckpt))
    assert {k for k in tensors if ".cuda." in k} == {"rng.cuda.0", "rng.cuda.1", "rng.rank1.cuda.0"}
    back = C.load_checkpoint(tmp_path / "c.safetensors")
    assert [s.tolist() for s in back.rng["cuda"]] == [s.tolist() for s in states]
    assert [s.tolist() for s in back.rank_rngs[0]["cuda"]] == [(states[1] + 1).tolist()]
    assert torch.equal(back.rank_rngs[0]["torch"], rng["torch"])

    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", calls.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    C.restore_rng(back.rng)  # saved on 2 GPUs, restored on 1: the first state only
    assert len(calls) == 1 and [s.tolist() for s in calls[0]] == [states[0].tolist()]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    C.restore_rng(back.rng)  # saved with CUDA, restored without: the CUDA states are not set
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    C.restore_rng(dict(back.rng, cuda=[]))  # saved without CUDA, restored with: nothing to set
    assert len(calls) == 1


def test_read_header_gives_the_metadata_and_refuses_what_read_tensors_refuses(tmp_path):
    model, opt = _trained("sgd")
    path = C.save_checkpoint(tmp_path / "h.safetensors", _ckpt(model, opt, global_step=7, epoch=1))
    header = C.read_header(path)
    assert header == C.read_tensors(path)[1]
    assert header["format"] == C.FORMAT and header["global_step"] == "7" and header["epoch"] == "1"
    assert json.loads(header["class_names"]) == ["a", "b", "c"]
    pth = tmp_path / "model.pth"
    torch.save(model.state_dict(), pth)
    with pytest.raises(C.CheckpointError, match="pickled PyTorch file"):
        C.read_header(pth)
    with pytest.raises(C.CheckpointError, match="does not exist"):
        C.read_header(tmp_path / "absent.safetensors")
    with pytest.raises(C.CheckpointError, match="is a folder"):
        C.read_header(tmp_path)
    bad_json = tmp_path / "bad.safetensors"
    bad_json.write_bytes(b"\x04\x00\x00\x00\x00\x00\x00\x00{x}}")  # a safetensors-looking header, not JSON
    with pytest.raises(C.CheckpointError, match=f"cannot read checkpoint {bad_json}"):
        C.read_header(bad_json)
    with pytest.raises(C.CheckpointError, match=f"cannot read checkpoint {bad_json}"):
        C.read_tensors(bad_json)


def test_read_weights_takes_a_checkpoint_a_safetensors_state_dict_or_a_pth(tmp_path):
    from safetensors.torch import save_file

    model, opt = _trained("sgd")
    state = model.state_dict()
    ckpt = C.save_checkpoint(tmp_path / "run.safetensors", _ckpt(model, opt))
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(plain), metadata={"format": "pt"})
    pth = tmp_path / "plain.pth"
    torch.save(state, pth)
    for path in (ckpt, plain, pth):
        got = C.read_weights(path)
        assert got.keys() == state.keys(), path  # a checkpoint's optimiser and RNG tensors are left out
        assert all(torch.equal(got[k], v) for k, v in state.items()), path
    pickled = tmp_path / "pickled.safetensors"
    torch.save(state, pickled)
    with pytest.raises(C.CheckpointError, match="pickled PyTorch file"):
        C.read_weights(pickled)
