"""The notebooks keep the collection's shape (STYLE.md); nbval runs them separately.

Checked here: committed without outputs, the sections a student relies on, solution
cells tagged (so they can be collapsed, and still run), the README lists every notebook,
and no code reaches for the network.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
NETWORK = re.compile(
    r"torch\.hub|load_state_dict_from_url|weights\s*=\s*['\"]?(\w+\.)?(DEFAULT|IMAGENET)|pretrained\s*=\s*True"
    r"|urlopen|urlretrieve|requests\.get|pooch\.|hf_hub_download|download\s*=\s*True|fetch_openml"
    r"|^\s*!\s*(wget|curl|pip)|from_pretrained\("
)



def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    cells = _cells(path)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit notebooks cleared"
    markdown = "\n".join(_text(c) for c in cells if c["cell_type"] == "markdown")
    assert _text(cells[0]).lstrip().startswith("# " + path.name[:2]), "first cell: '# NN · title'"
    for heading in ("What you'll learn", "Slides:", "Needs:", "Exercises", "Summary"):
        assert heading in markdown, f"missing section {heading!r}"
    solutions = [c for c in code if "solution" in c.get("metadata", {}).get("tags", [])]
    assert solutions, "each exercise needs a worked solution cell tagged 'solution'"
    assert all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in solutions), "solutions start collapsed"
    assert any("assert" in _text(c) for c in code), "correctness lives in asserts"
    for c in code:
        for line in _text(c).splitlines():
            assert not NETWORK.search(line), f"network access in a notebook cell: {line.strip()[:80]}"


def test_network_pattern_catches_downloads():
    for line in ["m = resnet18(weights=ResNet18_Weights.DEFAULT)", "MNIST(root, download=True)", "!wget http://x",
                 "urllib.request.urlretrieve(u, f)", "fetch_openml('mnist_784')", "torch.hub.load('a', 'b')",
                 "EfficientNet.from_pretrained('efficientnet-lite0')"]:
        assert NETWORK.search(line), line
    assert not NETWORK.search("model, preprocess, categories = models.load_pretrained()")


def test_camlib_has_no_download_calls():
    for path in sorted((ROOT / "camlib").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if NETWORK.search(code) and "from_pretrained(" not in code:
                raise AssertionError(f"{path.name}:{number} looks like a download: {line.strip()}")


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme, f"README's notebook table misses {path.name}"
