"""The layer `sam build` makes (layers/gasmon/Makefile): arm64 wheels, gasmon, bytecode ahead of time.

Reads `.aws-sam/build`, which `make test` builds before it runs pytest (`make build` alone does
too); without a build there is nothing to check and the tests say so.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / ".aws-sam" / "build" / "GasmonLayer" / "python"
EM_AARCH64 = 183
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked

pytestmark = pytest.mark.skipif(not LAYER.is_dir(), reason="no .aws-sam/build: run `make build` (make test does)")


def pyc_flags(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[4:8], "little")


def test_every_module_of_the_layer_has_its_bytecode_compiled_ahead() -> None:
    # Given every module the layer ships (gasmon and its dependencies)
    sources = list(LAYER.rglob("*.py"))
    assert any(p.parent.name == "gasmon" for p in sources)
    missing, checked = [], []
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not compiled.exists():
            missing.append(source)
        elif pyc_flags(compiled) != UNCHECKED_HASH:
            checked.append(compiled)
    # Then each has a .pyc Lambda's read-only /opt can use as it is
    assert not missing, f"{len(missing)} modules without .pyc, e.g. {missing[:3]}"
    assert not checked, f"{len(checked)} .pyc files that are not unchecked-hash, e.g. {checked[:3]}"


def test_native_extensions_are_arm64_as_the_functions() -> None:
    extensions = list(LAYER.glob("pydantic_core/*.so"))
    assert extensions, "pydantic_core's extension is missing"
    for extension in extensions:
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF"
        assert int.from_bytes(header[18:20], "little") == EM_AARCH64, extension.name


def test_the_layer_holds_packages_only() -> None:
    assert (LAYER / "gasmon" / "models.py").is_file()
    assert not (LAYER / "bin").exists()  # console scripts of the dependencies
    assert not list(LAYER.glob("gasmon/**/tests"))


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "layers" / "gasmon" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[canonical(name.split("[", 1)[0])] = version
    return pins


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_layer_ships_exactly_the_pinned_versions_and_nothing_else() -> None:
    shipped = {}
    for info in LAYER.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        shipped[canonical(name)] = version
    assert shipped == pinned()
