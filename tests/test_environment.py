"""environment.yml and pyproject.toml stay consistent; the README's commands exist."""

import pathlib
import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_project_with_its_test_extra():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "camlib"
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    minimum = re.match(r">=\s*3\.(\d+)", pyproject["project"]["requires-python"]).group(1)
    assert 11 >= int(minimum)  # the conda python satisfies requires-python
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-e .[test]"]  # every package comes from pyproject, none is listed twice
    assert "test" in pyproject["project"]["optional-dependencies"]


def test_torch_ranges_admit_the_pinned_pair():
    from packaging.requirements import Requirement

    deps = {Requirement(d).name: Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert deps["torch"].specifier.contains("2.14.1")
    assert deps["torchvision"].specifier.contains("0.29.1")


def test_readme_quickstart_matches_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]"' in readme and 'pip install -q -e ".[test]"' in ci
    assert ".venv/bin/python -m pytest" in readme and "(.venv/bin/python -m pytest)" in ci
    assert ".venv/bin/jupyter lab notebooks" in readme
