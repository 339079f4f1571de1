"""The README's configuration table lists every setting a service reads, and nothing else."""

from __future__ import annotations

import re

from tests.deploy.support import ROOT, service_names, settings_class

ROW = re.compile(r"^\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)*) \|", re.MULTILINE)


def table_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {name.strip("` ") for row in ROW.findall(section) for name in row.split(",")}


def settings_variables() -> set[str]:
    return {
        field.upper()
        for service in service_names()
        for field in settings_class(service).model_fields
    }


def test_every_setting_is_in_the_readmes_table() -> None:
    missing = settings_variables() - table_variables()
    assert not missing, f"settings the README's configuration table does not list: {missing}"


def test_the_table_lists_no_setting_that_does_not_exist() -> None:
    unknown = table_variables() - settings_variables()
    assert not unknown, f"the README's configuration table lists unknown settings: {unknown}"
