"""Every command in the docs runs, so the docs cannot rot (issue 15).

A fenced block in `sh` or `bash` is run, verbatim, against a local stack this test starts
(`StackProcess`: free ports, its own data dir), as a reader pastes it after `make local`: the
docs read addresses and keys from `${GASMON_ENDPOINTS:-.local/endpoints.json}`, and the test sets
`GASMON_ENDPOINTS` to its stack's file. The blocks of one document run in order in one shell
(`set -euo pipefail`), so a variable set in one block is there in the next; `curl` fails on an
HTTP error, so a documented request that is refused fails the test.

A block whose info string carries a marker is not run here, and is checked instead:
- `aws`: needs an AWS account; `pi`: runs on a Raspberry Pi; `foreground`/`static`: runs until
  Ctrl-C, is the test suite itself, or is run by its own test (the smoke test, the benches).
Each is parsed by `bash -n`, every `make` target it names must be one of the Makefile's, and every
`--flag` it gives `gasmon-admin`, `gasmon-device` or `gasmon-local` must be one the tool's
`--help` (or its subcommand's) lists. An unknown marker fails, so a typo never skips a block.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from gasmon_local.process import StackProcess

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
# The documents whose commands this test runs or checks.
DOCS = ["README.md", "docs/local.md", "docs/api.md", "docs/alarms.md", "docs/operating.md", "docs/performance.md"]
DOCS += ["device/README.md", "docs/deploy.md", "docs/dashboard.md"]
STATIC_MARKERS = {"aws", "pi", "foreground", "static"}
OUR_TOOLS = ("gasmon-admin", "gasmon-device", "gasmon-local")
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    markers: frozenset[str]
    body: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def shell_blocks(doc: str) -> list[Block]:
    """The `sh`/`bash` fenced blocks of one document, with their markers."""
    text = (ROOT / doc).read_text()
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if not words or words[0] not in ("sh", "bash"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(doc, line, frozenset(words[1:]), match["body"]))
    return blocks


def all_blocks() -> Iterator[Block]:
    for doc in DOCS:
        yield from shell_blocks(doc)


def logical_lines(body: str) -> list[str]:
    """Lines with backslash continuations joined."""
    return [line for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def commands(line: str) -> list[list[str]]:
    """The simple commands of a line (split at | ; && ||), comments dropped, assignments skipped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote spanning lines: bash -n judges the block
        return []
    found: list[list[str]] = [[]]
    for token in tokens:
        if token in ("|", ";", "&&", "||", "&"):
            found.append([])
        elif found[-1] or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            found[-1].append(token)
    return [command for command in found if command]


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-z][a-z0-9_-]*):", text, re.M))


@cache
def help_text(tool: str, subcommand: str | None) -> str:
    argv = [str(BIN / tool), *([subcommand] if subcommand else []), "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    return done.stdout + done.stderr


@cache
def subcommands(tool: str) -> frozenset[str]:
    text = help_text(tool, None)
    choices = re.search(r"\{([a-z,-]+)\}", text)
    return frozenset(choices.group(1).split(",")) if choices else frozenset()


def problems_of(block: Block) -> list[str]:
    """What is wrong with a block that is not run here: syntax, unknown make targets or flags."""
    found = []
    syntax = subprocess.run(["bash", "-n"], input=block.body, capture_output=True, text=True, check=False)
    if syntax.returncode != 0:
        found.append(f"bash -n: {syntax.stderr.strip()}")
    for line in logical_lines(block.body):
        for command in commands(line):
            name = Path(command[0]).name
            if name == "make":
                for target in command[1:]:
                    if "=" in target or target.startswith("-"):
                        continue
                    if target not in make_targets():
                        found.append(f"`make {target}`: no such target in the Makefile")
            elif name in OUR_TOOLS:
                subcommand = next((word for word in command[1:] if word in subcommands(name)), None)
                known = help_text(name, None) + help_text(name, subcommand) if subcommand else help_text(name, None)
                for word in command[1:]:
                    flag = word.split("=", 1)[0]
                    if flag.startswith("--") and not re.search(rf"{re.escape(flag)}\b", known):
                        found.append(f"`{name} {subcommand or ''} {flag}`: the tool's --help does not list it")
    return found


def test_the_readme_is_a_front_page() -> None:
    # Given the README a newcomer opens first
    text = (ROOT / "README.md").read_text()
    # Then it is short, keeps the bench table where `make bench` rewrites it, and links every guide
    assert len(text.splitlines()) <= 250
    assert text.count("<!-- bench:begin -->") == text.count("<!-- bench:end -->") == 1
    for guide in ("docs/local.md", "docs/deploy.md", "docs/dashboard.md", "docs/alarms.md", "docs/api.md"):
        assert f"]({guide})" in text, guide
    assert "](docs/operating.md)" in text and "](device/README.md)" in text


def test_every_marker_is_known_and_every_document_has_commands() -> None:
    # Given every shell block of the documents
    blocks = list(all_blocks())
    # Then each document has some, and no block carries a marker this test does not know
    assert {block.doc for block in blocks} == set(DOCS)
    unknown = [
        (block.where, sorted(block.markers - STATIC_MARKERS)) for block in blocks if block.markers - STATIC_MARKERS
    ]
    assert not unknown


def test_commands_not_run_here_parse_and_name_real_targets_and_flags() -> None:
    # Given the blocks that need AWS, a Pi, or run in the foreground
    static = [block for block in all_blocks() if block.markers]
    assert static
    # When each is checked
    found = {block.where: problems_of(block) for block in static}
    # Then none has a syntax error, an unknown make target or a flag our tools do not have
    assert not {where: problems for where, problems in found.items() if problems}


def test_the_static_check_catches_a_wrong_flag_and_a_wrong_target() -> None:
    # Given a block with a misspelt flag of our own tool and a target that does not exist
    block = Block(
        "x.md", 1, frozenset({"aws"}), "make lint nosuchtarget\ngasmon-admin --stack s provision pi --gruop 5\n"
    )
    # Then both are reported (the check can fail)
    found = problems_of(block)
    assert any("nosuchtarget" in problem for problem in found)
    assert any("--gruop" in problem for problem in found)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A local stack with one simulated Pi of its own (sim-pi-01), as `make local` runs it."""
    data_dir = tmp_path_factory.mktemp("docs-stack")
    with StackProcess(data_dir, "--devices", "1", "--interval", "2", "--grace", "2") as process:
        yield process


def run_document(doc: str, stack: StackProcess, home: Path) -> subprocess.CompletedProcess[str]:
    """Run a document's runnable blocks in one bash, in order, from the repository root."""
    parts = ["set -euo pipefail", 'curl() { command curl --fail-with-body "$@"; }']
    for block in shell_blocks(doc):
        if not block.markers:
            parts += [f"echo '::: {block.where}' >&2", block.body]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GASMON_")}
    environment |= {
        "GASMON_ENDPOINTS": str(stack.data_dir / "endpoints.json"),
        "PATH": f"{BIN}{os.pathsep}{environment.get('PATH', '')}",
        "HOME": str(home),  # the device agent's queue goes under ~/.local/state
    }
    # Its own process group, so a command that hangs is stopped with everything it started.
    with subprocess.Popen(
        ["bash", "-c", "\n".join(parts)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stderr += "\n(timed out after 180 s)"
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("doc", [doc for doc in DOCS if any(not b.markers for b in shell_blocks(doc))])
def test_the_documents_commands_run_against_a_local_stack(doc: str, stack: StackProcess, tmp_path: Path) -> None:
    # Given a running local stack and the document's commands, verbatim
    # When they run in order in one shell
    done = run_document(doc, stack, tmp_path)
    # Then every one succeeds (a refused request fails curl)
    assert done.returncode == 0, f"{doc}:\n{done.stderr[-3000:]}\n{done.stdout[-2000:]}\n{stack.log_tail(30)}"
    if doc == "device/README.md":
        # And simulate's virtual Pis, sim-dev-NN, delivered everything beside the stack's own
        # sim-pi-01 without either being kicked off the broker
        assert "sim-dev-01: " in done.stdout and "sim-dev-02: " in done.stdout
        assert "0 still queued" in done.stdout
        assert "DUPLICATE_CLIENTID" not in stack.log_path.read_text()
