"""docs/deploy.md cannot drift from template.yaml: every parameter, output and retained resource
is in it, and its outputs table lists exactly the template's outputs."""

from __future__ import annotations

import re
from pathlib import Path

from gasmon_local.template import load

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()
TEMPLATE = load(ROOT / "template.yaml")


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


def _first_column(section: str, header: str) -> list[str]:
    """The backticked names in the first column of the table whose header row starts with `header`."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    names = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        match = re.match(r"\|\s*`([^`]+)`", line)
        assert match, f"a row of the {header} table without a `name`: {line}"
        names.append(match.group(1))
    return names


def test_the_parameter_table_names_every_template_parameter_once() -> None:
    # Given the template's parameters, Then the parameters table has exactly one row for each
    names = _first_column(_section("4. Parameters"), "parameter")
    assert sorted(names) == sorted(TEMPLATE["Parameters"])


def test_every_parameter_default_in_the_table_is_the_templates() -> None:
    # Given each row's default column, Then it is the template's default (empty ones say "empty")
    section = _section("4. Parameters")
    for name, spec in TEMPLATE["Parameters"].items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
        default = row.split(" | ")[1]
        expected = str(spec.get("Default", ""))
        assert default == (f"`{expected}`" if expected else "empty"), name


def test_the_outputs_table_is_exactly_the_templates_outputs_in_order() -> None:
    names = _first_column(_section("5. The first deploy"), "output")
    assert names == list(TEMPLATE["Outputs"])


def test_every_retained_resource_is_named_in_deleting() -> None:
    # Given the resources sam delete leaves behind, Then "Deleting" names each one
    retained = [k for k, v in TEMPLATE["Resources"].items() if v.get("DeletionPolicy") == "Retain"]
    assert retained
    deleting = _section("9. Deleting")
    kept = _first_column(deleting, "kept")
    assert sorted(kept) == sorted(retained)


def test_the_functions_make_logs_takes_are_listed() -> None:
    functions = [k for k, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]
    for name in functions:
        assert f"`{name}`" in _section("6. After the deploy: smoke test, dashboard, devices"), name


def test_the_korean_defaults_are_flagged_as_choices() -> None:
    choices = _section("3. Choices to make before the first deploy")
    region = re.search(r'region = "([^"]+)"', (ROOT / "samconfig.toml").read_text())
    assert region and f"`{region.group(1)}`" in choices
    assert f"`{TEMPLATE['Parameters']['LocalTimezone']['Default']}`" in choices
