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
    assert back.rank_rngs[0]["numpy"] == json.loads(json.dumps(rng["numpy"]))
    assert back.rank_rngs[0]["random"] == json.loads(json.dumps(rng["random"]))

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
    with pytest.raises(C.CheckpointError, match=r"^checkpoint \S+absent.safetensors does not exist; check"):
        C.read_header(tmp_path / "absent.safetensors")
    with pytest.raises(C.CheckpointError, match=r"^checkpoint \S+ is a folder; give a regular file$"):
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


def test_every_field_round_trips_including_scalar_optimizer_state(tmp_path):
    """Fields the training loop fills (flow, epoch sums, task state) and non-tensor optimiser state (LBFGS
    keeps counters as ints; a key may hold dots) come back as they went in."""
    optimizer = {
        "state": {0: {"func_evals": 3, "n_iter": 2, "d.x": torch.ones(2)}, 1: {"prev_loss": 0.25, "h.n": 7}},
        "param_groups": [{"lr": 0.5, "params": [0, 1]}],
    }
    ckpt = C.Checkpoint(
        model={"w": torch.arange(3.0)},
        config={"seed": 1},
        class_names=["x", "y"],
        optimizer=optimizer,
        flow={"method": "dis", "bound": 20.0, "short_side": 256},
        epoch_sums={"loss": 1.5, "seen": 4},
        task_state={"vocabulary": ["<pad>", "a"]},
    )
    back = C.load_checkpoint(C.save_checkpoint(tmp_path / "f.safetensors", ckpt))
    assert back.flow == {"method": "dis", "bound": 20.0, "short_side": 256}
    assert back.epoch_sums == {"loss": 1.5, "seen": 4} and back.task_state == {"vocabulary": ["<pad>", "a"]}
    assert back.config == {"seed": 1} and back.rank_rngs == [] and back.rng is None
    state = back.optimizer["state"]
    assert set(state) == {0, 1} and state[1] == {"prev_loss": 0.25, "h.n": 7}
    assert (
        state[0]["func_evals"] == 3
        and state[0]["n_iter"] == 2
        and torch.equal(state[0]["d.x"], torch.ones(2))
    )
    assert back.optimizer["param_groups"] == [{"lr": 0.5, "params": [0, 1]}]


def test_a_checkpoint_without_the_later_fields_still_loads(tmp_path):
    """Older files lack epoch_sums, task_state, rng_ranks, flow and has_optimizer: defaults stand in."""
    from safetensors.torch import save_file

    meta = {
        "format": C.FORMAT, "epoch": "3", "step_in_epoch": "0", "global_step": "30", "best_metric": "0.5",
        "config": "{}", "class_names": '["a"]', "scheduler": "{}", "sampler": "{}", "metrics": "{}",
        "optim_groups": "[]", "optim_scalars": "{}",
    }  # fmt: skip
    path = tmp_path / "old.safetensors"
    save_file({"model.w": torch.ones(2)}, str(path), metadata=meta)
    back = C.load_checkpoint(path)
    assert (back.epoch, back.global_step, back.best_metric, back.class_names) == (3, 30, 0.5, ["a"])
    assert back.epoch_sums == {} and back.task_state == {} and back.rank_rngs == []
    assert back.flow is None and back.optimizer is None and back.rng is None
    assert torch.equal(back.model["w"], torch.ones(2))


def test_a_checkpoint_of_no_tensors_loads_and_other_files_are_named(tmp_path):
    # no tensors at all: the header fills the file exactly, which the pre-parse check must accept
    path = C.save_checkpoint(
        tmp_path / "empty.safetensors", C.Checkpoint(model={}, config={}, class_names=[])
    )
    assert C.load_checkpoint(path).model == {}
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(1)}, str(plain))
    with pytest.raises(C.CheckpointError, match=r"not a vidrec checkpoint \(format None, expected 'vidrec-"):
        C.load_checkpoint(plain)
    legacy = tmp_path / "legacy.pt"  # torch's pre-1.6 format: a bare pickle stream, first byte 0x80
    torch.save({"w": torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:1] == b"\x80"
    advice = "Convert trusted weights with safetensors.torch.save_file(torch.load(f, weights_only=True), "
    advice += "'x.safetensors')."
    with pytest.raises(C.CheckpointError, match="pickled PyTorch file") as err:
        C.load_checkpoint(legacy)
    assert str(err.value).endswith(" " + advice)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-1])  # the header claims one byte more than the file has
    with pytest.raises(C.CheckpointError, match="bad header.*truncated"):
        C.load_checkpoint(cut)
    for name, data in (("short", b"\x02\x00\x00"), ("zero", b"\x00" * 8 + b"{}"), ("empty", b"")):
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(data)
        with pytest.raises(C.CheckpointError, match=f"{bad} is not a .safetensors file"):
            C.load_checkpoint(bad)
    one = tmp_path / "one.safetensors"
    one.write_bytes(b"\x01" + b"\x00" * 7 + b"{")  # passes the pre-parse check; the parser refuses it
    with pytest.raises(C.CheckpointError, match=f"cannot read checkpoint {one}"):
        C.load_checkpoint(one)


def test_the_mismatch_message_lists_at_most_ten_keys_of_each_kind():
    model = torch.nn.Sequential(*[torch.nn.Linear(1, 1) for _ in range(6)])  # 12 keys
    extra = {f"extra{i}": torch.zeros(1) for i in range(12)}
    with pytest.raises(C.CheckpointError) as err:
        C.load_model_state(model, extra, source="x.safetensors")
    message = str(err.value)
    assert message.startswith("x.safetensors does not match the model: missing ['0.weight', ")
    assert "'4.bias'" in message and "'5.weight'" not in message  # the 10th missing key, not the 11th
    assert "'extra9'" in message and "'extra10'" not in message


def test_dead_writers_temps_are_found_by_the_last_dash_only(tmp_path):
    """File names with dashes, non-numeric suffixes and this process's own temp file are handled."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path = tmp_path / "run-1.last.safetensors"
    stale = tmp_path / f".run-1.last.safetensors.tmp-{int(dead.stdout)}"
    odd = tmp_path / ".run-1.last.safetensors.tmp-abc"
    own = tmp_path / f".run-1.last.safetensors.tmp-{os.getpid()}"
    for f in (stale, odd, own):
        f.write_bytes(b"x")
    assert C.remove_dead_temps(path) == [stale]
    assert not stale.exists() and odd.exists() and own.exists()


def test_the_folder_is_synced_after_the_rename_and_sync_errors_are_tolerated(tmp_path, monkeypatch):
    import stat

    synced, closed, real_fsync, real_close = [], [], os.fsync, os.close

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    def close(fd):
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(C.os, "fsync", fsync)
    monkeypatch.setattr(C.os, "close", close)
    path = C.save_checkpoint(tmp_path / "s.safetensors", C.Checkpoint(model={}, config={}, class_names=[]))
    assert synced == [False, True]  # the temp file, then the folder that holds the new name
    assert len(closed) == 1

    def failing_fsync(fd):
        raise OSError("fsync not supported here")

    monkeypatch.setattr(
        C.os, "fsync", lambda fd: failing_fsync(fd) if stat.S_ISDIR(os.fstat(fd).st_mode) else None
    )
    C.save_checkpoint(path, C.Checkpoint(model={}, config={}, class_names=["b"]))
    assert len(closed) == 2  # the folder's descriptor is closed after a failed sync
    monkeypatch.setattr(C.os, "open", lambda *a, **k: failing_fsync(0))
    C.save_checkpoint(path, C.Checkpoint(model={}, config={}, class_names=["c"]))
    assert C.load_checkpoint(path).class_names == ["c"] and len(closed) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_inference_builds_from_the_file_alone_on_the_given_device(tmp_path, monkeypatch):
    """The stored pretrained path is not read, the stored task state reaches the task, the device is used,
    and weights that do not fit the stored model are refused naming the file."""
    from vidrec.models import get_model
    from vidrec.tasks.classify import Classify

    model = get_model("single_frame_mobilenet_v2", num_classes=2)
    cfg = load_config(None, ["data.train_list=t.txt", "model.name=single_frame_mobilenet_v2"])
    config = config_to_dict(cfg)
    config["model"]["kwargs"] = {"pretrained": str(tmp_path / "gone.pth")}  # never read by inference
    ckpt = C.Checkpoint(model=model.state_dict(), config=config, class_names=["a", "b"], task_state={"k": 1})
    path = C.save_checkpoint(tmp_path / "m.safetensors", ckpt)
    states = []
    real = Classify.load_state
    monkeypatch.setattr(Classify, "load_state", lambda self, s, **kw: (states.append(s), real(self, s, **kw)))
    on_meta, _, names = C.load_for_inference(path, "meta")
    assert names == ["a", "b"] and states == [{"k": 1}]
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
    rebuilt, task = C.load_task(path)  # the default device is the CPU
    assert {p.device.type for p in rebuilt.parameters()} == {"cpu"} and task.class_names() == ["a", "b"]
    assert torch.equal(
        rebuilt.state_dict()["backbone.net.classifier.1.bias"], model.backbone.net.classifier[1].bias
    )
    bad = dict(model.state_dict())
    del bad["backbone.net.classifier.1.bias"]
    C.save_checkpoint(path, C.Checkpoint(model=bad, config=config, class_names=["a", "b"]))
    with pytest.raises(C.CheckpointError, match=rf"^{path} does not match the model: missing \["):
        C.load_for_inference(path)


def test_init_weights_copies_a_checkpoint_into_the_model_or_a_named_part(tmp_path):
    """`model.init_from`: a path initialises the whole model (heads fresh unless init_heads), a dict the
    named parts; an unknown part and a source of which nothing matches are errors naming them."""
    from types import SimpleNamespace

    from vidrec.models import get_model

    torch.manual_seed(0)
    source = get_model("single_frame_mobilenet_v2", num_classes=3)
    path = C.save_checkpoint(
        tmp_path / "a.safetensors",
        C.Checkpoint(model=source.state_dict(), config={}, class_names=["a", "b", "c"]),
    )
    conv, head = "backbone.net.features.0.0.weight", "backbone.net.classifier.1.weight"
    model = get_model("single_frame_mobilenet_v2", num_classes=3)
    lines = []
    reports = C.init_weights(model, SimpleNamespace(init_from=str(path), init_heads=False), log=lines.append)
    assert len(reports) == 1 and lines == [reports[0].summary()] and lines[0].startswith(f"init_from {path}:")
    assert torch.equal(model.state_dict()[conv], source.state_dict()[conv])
    assert not torch.equal(model.state_dict()[head], source.state_dict()[head])  # heads start fresh
    C.init_weights(model, SimpleNamespace(init_from=str(path), init_heads=True))
    assert torch.equal(model.state_dict()[head], source.state_dict()[head])
    part = get_model("single_frame_mobilenet_v2", num_classes=3)
    C.init_weights(part, SimpleNamespace(init_from={"backbone": str(path)}, init_heads=False))
    assert torch.equal(part.state_dict()[conv], source.state_dict()[conv])
    # the part has no num_classes of its own: the model's tells which Linear is a head
    assert not torch.equal(part.state_dict()[head], source.state_dict()[head])
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))  # no num_classes at all
    tiny = C.save_checkpoint(
        tmp_path / "t.safetensors",
        C.Checkpoint(model=torch.nn.Linear(2, 2).state_dict(), config={}, class_names=[]),
    )
    C.init_weights(plain, SimpleNamespace(init_from={"0": str(tiny)}, init_heads=False))
    with pytest.raises(ValueError, match=r"^model.init_from: the model has no part 'nope'"):
        C.init_weights(part, SimpleNamespace(init_from={"nope": str(path)}, init_heads=False))
    unrelated = {f"x{i}": torch.ones(1) for i in range(5)}
    other = C.save_checkpoint(
        tmp_path / "b.safetensors", C.Checkpoint(model=unrelated, config={}, class_names=[])
    )
    with pytest.raises(
        ValueError, match=rf"^model.init_from.backbone: no tensor of {other} matches the model"
    ):
        C.init_weights(part, SimpleNamespace(init_from={"backbone": str(other)}, init_heads=False))
    examples = r"\(5 source tensors, e.g. \['x0', 'x1', 'x2'\]\);"  # three of them
    with pytest.raises(
        ValueError, match=rf"^model.init_from: no tensor of {other} matches the model {examples}"
    ):
        C.init_weights(part, SimpleNamespace(init_from=str(other), init_heads=False))


def test_the_task_of_a_file_that_is_not_a_checkpoint_is_refused_naming_its_format(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(1)}, str(plain), metadata={"format": "pt"})
    expected = rf"^{plain} is a safetensors file but not a vidrec checkpoint \(format 'pt'\)$"
    with pytest.raises(C.CheckpointError, match=expected):
        C.checkpoint_task(plain)
    with pytest.raises(C.CheckpointError, match=expected):
        C.require_task(plain, ("classify",))
    with pytest.raises(
        C.CheckpointError, match=r"vidrec checkpoint \(format 'pt', expected 'vidrec-checkpoint/1'\)$"
    ):
        C.load_checkpoint(plain)
    ckpt = C.save_checkpoint(
        tmp_path / "r.safetensors", C.Checkpoint(model={}, config={}, class_names=[], rng=C.capture_rng())
    )
    tensors, header = C.read_tensors(ckpt)
    del header["rng_numpy"]  # the torch state is there, its numpy companion is not
    save_file(tensors, str(ckpt), metadata=header)
    with pytest.raises(
        C.CheckpointError, match=rf"^{ckpt}: its optimiser or RNG state is damaged \('rng_numpy'\);"
    ):
        C.load_checkpoint(ckpt)


def test_shape_mismatches_are_listed_three_at_most_one_per_tensor():
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(2)])  # 4 tensors
    wrong = {k: torch.zeros(3, *v.shape[1:]) for k, v in model.state_dict().items()}  # every shape differs
    with pytest.raises(C.CheckpointError) as err:
        C.load_model_state(model, wrong, source="w.safetensors")
    message = str(err.value)
    assert message.startswith("w.safetensors does not match the model its metadata describes: size mismatch")
    parts = message.split(": ", 1)[1].split("; ")
    assert len(parts) == 3 and all(p.startswith("size mismatch for ") for p in parts)


def test_the_task_check_names_a_missing_count_a_bad_task_and_what_each_task_needs(tmp_path):
    from safetensors.torch import save_file

    def stored(name: str, config: dict) -> Path:
        return C.save_checkpoint(
            tmp_path / f"{name}.safetensors", C.Checkpoint(model={}, config=config, class_names=["a"])
        )

    no_epoch = stored("no_epoch", {})
    header = C.read_header(no_epoch)
    del header["epoch"]
    save_file({}, str(no_epoch), metadata=header)
    with pytest.raises(C.CheckpointError, match=r"metadata 'epoch' is '\(missing\)', not a count;"):
        C.load_checkpoint(no_epoch)
    bad_task = stored("bad_task", {"task": 3})
    with pytest.raises(C.CheckpointError, match=rf"^{bad_task}: its stored config's task is 3, not a name;"):
        C.checkpoint_task(bad_task)
    landmarks = stored("landmarks", {"task": "landmarks"})
    with pytest.raises(
        C.CheckpointError,
        match=rf"^{landmarks} is a `task: landmarks` checkpoint; this command needs a `task: classify` or "
        r"`task: caption` one \(use vidrec predict\)$",
    ):
        C.require_task(landmarks, ("classify", "caption"))
    own = stored("own", {"task": "mine"})  # a task vidrec has no command for: no advice
    with pytest.raises(C.CheckpointError, match=r"predict needs a `task: classify` one$"):
        C.require_task(own, ("classify",), "predict")
    assert C.require_task(own, ()) == "mine" and C.require_task(own, ("mine",)) == "mine"


@pytest.mark.parametrize(
    ("key", "stored", "message"),
    [
        ("config", "null", "'config' is a NoneType"),
        ("flow", "[1]", "'flow' is a list"),
        ("flow", "null", None),
    ],
)
def test_a_stored_field_of_the_wrong_type_is_named_and_an_optional_null_is_none(
    tmp_path, key, stored, message
):
    from safetensors.torch import save_file

    path = C.save_checkpoint(tmp_path / "t.safetensors", C.Checkpoint(model={}, config={}, class_names=[]))
    save_file({}, str(path), metadata={**C.read_header(path), key: stored})
    if message is None:
        assert C.load_checkpoint(path).flow is None
    else:
        with pytest.raises(C.CheckpointError, match=rf"^{path}: metadata {message};"):
            C.load_checkpoint(path)
