"""The widget notebooks, run in a real JupyterLab in headless Chromium.

The kernel-side tests (tests/test_widgets_*.py) cannot see whether a widget renders:
a missing labextension or a broken view shows up only in the browser, as
"Error displaying widget" or a plain-text repr such as ``VBox(children=...)``.
This module starts JupyterLab on 127.0.0.1 (random port, token) on a COPY of
notebooks/ in a temporary directory (autosave never touches the repo), opens each
notebook that uses widgets in Chromium (Debian's /usr/bin/chromium, driven by
Playwright), runs all cells, checks that the widgets render, moves a slider with
the keyboard (a dropdown when a notebook's widgets have no slider) and checks that
the picture in that cell changes. While no notebook shows the CAM explorer, a
two-cell notebook made in the temporary copy does. Every request that does not go
to the loopback interface is aborted. A failing test leaves a screenshot, the page
text and the server log in test-artifacts/; a passing one leaves a screenshot of
the widget it moved (test-artifacts/browser_<notebook>_widget.png), to look at.

Needs: apt package ``chromium``, pip package ``playwright`` (its browser download
is not needed). Skipped, with the reason, when either is missing. Run alone with
``pytest tests/test_browser.py -m browser``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# "camlib.widgets", "ipywidgets", or `from camlib import ..., widgets`
WIDGET_CODE = re.compile(r"camlib\.widgets|ipywidgets|from\s+camlib\s+import\s+(\([^)]*|[^\n]*)\bwidgets\b")
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"
PLAIN_REPRS = ("VBox(", "HBox(", "GridBox(", "Tab(children=", "Accordion(children=")
SERVER_START_S = 90
KERNEL_START_S = 120
RUN_ALL_S = 420  # a notebook's cells, all of them, in the browser's kernel
PICTURE_CHANGE_S = 45
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


# --------------------------------------------------------------------------- which notebooks
def _code_sources(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")


def widget_notebooks() -> list[str]:
    """Names of notebooks/*.ipynb whose code uses widgets (camlib.widgets or ipywidgets)."""
    found = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        try:
            source = _code_sources(path)
        except (OSError, ValueError):
            continue
        if WIDGET_CODE.search(source):
            found.append(path.name)
    return found


SMOKE = "explorer_smoke.ipynb"  # made in the temporary copy when no repo notebook shows the explorer


def _needs_smoke() -> bool:
    return not any("cam_explorer" in _code_sources(NOTEBOOKS / name) for name in widget_notebooks())


def _write_smoke_notebook(folder: Path) -> None:
    """A two-cell notebook that displays the CAM explorer and changes it from the kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("from camlib import widgets\nexplorer = widgets.cam_explorer()\nexplorer.widget"),
        nbformat.v4.new_code_cell(
            "box = explorer.current_box.clone()\nexplorer.threshold.value = 0.6\n"
            "assert not (explorer.current_box == box).all()"),
    ]
    nbformat.write(nb, folder / SMOKE)


NOTEBOOK_PARAMS = widget_notebooks() + ([SMOKE] if _needs_smoke() else [])


# --------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate ``proc`` (then kill it), by its id."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Terminate (then kill) a process we started indirectly (a kernel), by its id."""
    import psutil

    try:
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        proc.kill()


class Lab:
    """A JupyterLab server on 127.0.0.1 over a temporary copy of notebooks/."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = root.parent / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        home = self.root.parent
        config = home / "jupyter-config"
        settings = config / "lab" / "user-settings" / "@jupyterlab"
        # all cells in the DOM (no virtual scrolling, so off-screen widgets render too);
        # no news or update checks (no network)
        _write_json(settings / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
        _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                    {"fetchNews": "false", "checkForUpdates": False})
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(home / "ipython"),
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("MPLBACKEND", None)  # the notebooks' own inline backend
        command = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            f"--LabApp.workspaces_dir={home / 'workspaces'}",
            f"--LabApp.user_settings_dir={config / 'lab' / 'user-settings'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly", "--expose-app-in-browser",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            command.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}; log:\n{self.log()}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer on {self.base} within {SERVER_START_S} s; log:\n{self.log()}")

    def api(self, method: str, path: str):
        request = urllib.request.Request(self.base + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Ask the server to shut down every kernel (the kernels this module started)."""
        try:
            for kernel in self.api("GET", "/api/kernels") or []:
                try:
                    self.api("DELETE", f"/api/kernels/{kernel['id']}")
                except OSError:
                    pass
        except OSError:
            pass

    def stop(self) -> None:
        import psutil

        if self.proc is None:
            return
        self.shutdown_kernels()
        try:  # kernels run in their own sessions: remember them before the server goes
            children = [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            children = []
        _stop(self.proc)
        for pid in children:
            _stop_pid(pid)
        try:  # anything left in the server's own process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "notebooks"
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        root.mkdir()
    if SMOKE in NOTEBOOK_PARAMS:
        _write_smoke_notebook(root)
    server = Lab(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = sync_api.sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser, lab, request):
    """A fresh browser context in which only loopback requests get through."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []

    def only_loopback(route):
        from urllib.parse import urlsplit

        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.blocked = blocked
    page.console_lines = []
    page.on("console", lambda msg: page.console_lines.append(f"{msg.type}: {msg.text}"))
    try:
        yield page
    finally:
        context.close()
        lab.shutdown_kernels()


# --------------------------------------------------------------------------- page helpers
# code cells of the open notebook, from JupyterLab's own model (hidden inputs have no prompt)
_CELLS_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets.filter(
    c => c.model.type === 'code' && c.model.sharedModel.getSource().trim() !== '');
  const busy = c => c.model.executionState === 'running'
    || (c.promptNode !== null && c.promptNode !== undefined && c.promptNode.textContent.includes('*'));
  return {
    total: cells.length,
    running: cells.filter(busy).length,
    done: cells.filter(c => c.model.executionCount !== null && !busy(c)).length,
  };
}"""

# the pictures of one cell's outputs: <img> sources (widget Image blobs, inline figures)
_PICTURES = """(handle) => {
  const cell = handle.closest('.jp-Cell');
  const imgs = [...cell.querySelectorAll('.jp-OutputArea img')];
  return imgs.map(img => img.src.length > 200 ? img.src.length + ':' + img.src.slice(-120) : img.src);
}"""


def _kernel_status_text(page) -> str:
    return page.evaluate("() => [...document.querySelectorAll('.jp-StatusBar-Widget')]"
                         ".map(e => e.textContent).join(' | ')")


def _wait_kernel_idle(page, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if KERNEL_IDLE in _kernel_status_text(page).replace("\u00a0", " "):
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"the status bar never showed {KERNEL_IDLE!r}; it shows {_kernel_status_text(page)!r}")


def _run_all(page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


def _wait_cells_done(page, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(1000)
    state = page.evaluate(_CELLS_STATE)
    quiet_since = None
    while time.monotonic() < deadline:
        state = page.evaluate(_CELLS_STATE)
        idle = KERNEL_IDLE in _kernel_status_text(page).replace("\u00a0", " ")
        if state["running"] == 0 and state["done"] > 0 and idle:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 2.0:
                return state
        else:
            quiet_since = None
        page.wait_for_timeout(500)
    raise AssertionError(f"the cells did not finish within {timeout_s} s: {state}")


def _output_texts(page) -> list[str]:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").all_inner_texts()


def _save_artifacts(page, lab, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    stem = Path(name).stem
    shot = ARTIFACTS / f"browser_{stem}.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        (ARTIFACTS / f"browser_{stem}.txt").write_text(
            page.locator("body").inner_text() + "\n\n--- console ---\n" + "\n".join(page.console_lines)
            + "\n\n--- blocked requests ---\n" + "\n".join(page.blocked), errors="replace")
    except Exception as err:  # the page may be gone; the server log still helps
        (ARTIFACTS / f"browser_{stem}.txt").write_text(f"no page capture: {err}")
    (ARTIFACTS / f"browser_{stem}_jupyterlab.log").write_text(lab.log())
    return shot


def _wait_picture_change(element, before, page) -> bool:
    deadline = time.monotonic() + PICTURE_CHANGE_S
    while time.monotonic() < deadline:
        if element.evaluate(_PICTURES) != before:
            return True
        page.wait_for_timeout(250)
    return False


def _move_a_control(page):
    """Move a slider (keyboard on its handle) and check that a picture of its cell changes.

    A notebook whose widgets have no slider gets a dropdown changed instead.
    Returns (what was done, the control's element); raises when no control changed a picture.
    """
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea"
    handles = page.locator(f"{panel} .widget-slider .noUi-handle")
    tried = []
    for i in range(handles.count()):
        handle = handles.nth(i)
        element = handle.element_handle()
        before = element.evaluate(_PICTURES)
        if not before:
            continue  # this slider's cell shows no picture
        handle.scroll_into_view_if_needed()
        value, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
        handle.focus()
        page.keyboard.press("Home" if value == top else "End")
        moved = f"slider {i} from {value} to {handle.get_attribute('aria-valuenow')}"
        if _wait_picture_change(element, before, page):
            return f"moved {moved}: the picture changed", element
        tried.append(f"{moved}: picture unchanged")
    selects = page.locator(f"{panel} .widget-dropdown select")
    if not tried:
        for i in range(selects.count()):
            select = selects.nth(i)
            element = select.element_handle()
            before = element.evaluate(_PICTURES)
            options = element.evaluate("(s) => [...s.options].map(o => o.value)")
            if not before or len(options) < 2:
                continue
            current = element.evaluate("(s) => s.selectedIndex")
            select.scroll_into_view_if_needed()
            select.select_option(index=(current + 1) % len(options))
            if _wait_picture_change(element, before, page):
                return (f"no slider beside a picture; changed dropdown {i} to option "
                        f"{(current + 1) % len(options)}: the picture changed", element)
            tried.append(f"dropdown {i}: picture unchanged")
    raise AssertionError(f"no control changed a picture ({handles.count()} sliders, {selects.count()} dropdowns; "
                         f"{tried or 'none beside a picture'})")


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 30, 30, 180)).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload_in_browser(page) -> str:
    """Through the CAM explorer's upload button: garbage gives a message, a PNG is shown.

    Returns what was done ("" when the notebook has no upload button).
    """
    uploads = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea .widget-upload")
    if uploads.count() == 0:
        return ""
    button = uploads.first
    button.scroll_into_view_if_needed()
    element = button.element_handle()
    cell = element.evaluate_handle("(e) => e.closest('.jp-Cell')").as_element()
    before = element.evaluate(_PICTURES)

    def choose(name: str, content: bytes) -> None:  # click the button, answer the file dialog
        with page.expect_file_chooser(timeout=PICTURE_CHANGE_S * 1000) as chooser:
            button.click()
        chooser.value.set_files(files=[{"name": name, "mimeType": "image/png", "buffer": content}])

    choose("notes.png", b"not an image")
    page.wait_for_function("(cell) => cell.innerText.includes('Could not use notes.png')", arg=cell,
                           timeout=PICTURE_CHANGE_S * 1000)
    assert element.evaluate(_PICTURES) == before, "a bad upload changed the picture"
    assert "Traceback" not in cell.inner_text()
    choose("red.png", _png(64, 48))
    page.wait_for_function("(cell) => cell.innerText.includes('Showing red.png')", arg=cell,
                           timeout=PICTURE_CHANGE_S * 1000)
    assert _wait_picture_change(element, before, page), "the uploaded photo was not drawn"
    return "garbage upload gave a message, an RGBA PNG upload was drawn"


def _assert_widgets_render(page, name: str) -> None:
    texts = _output_texts(page)
    broken = [t for t in texts if "Error displaying widget" in t]
    assert not broken, f"{name}: {broken[0][:500]}"
    plain = [t for t in texts if any(r in t for r in PLAIN_REPRS)]
    assert not plain, f"{name}: a widget is shown as plain text (is the widget labextension missing?): {plain[0][:300]}"


# --------------------------------------------------------------------------- the test
@pytest.mark.skipif(not NOTEBOOK_PARAMS, reason="no notebook in notebooks/ uses widgets yet")
@pytest.mark.parametrize("name", NOTEBOOK_PARAMS)
def test_widgets_render_and_respond_in_jupyterlab(page, lab, name):
    try:
        page.goto(f"{lab.base}/lab/tree/{name}?reset&token={lab.token}", wait_until="domcontentloaded")
        page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=KERNEL_START_S * 1000)
        _wait_kernel_idle(page, KERNEL_START_S)
        _run_all(page)
        state = _wait_cells_done(page, RUN_ALL_S)
        texts = _output_texts(page)
        failed = [t for t in texts if "Traceback (most recent call last)" in t]
        assert not failed, f"{name}: a cell raised:\n{failed[0][-3000:]}"
        assert state["done"] == state["total"], f"{name}: only {state['done']} of {state['total']} code cells ran"
        _assert_widgets_render(page, name)
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea .jupyter-widgets").first.wait_for(
            timeout=30_000)
        page.wait_for_function(
            "() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)').innerText"
            ".includes('Loading widget...')", timeout=30_000)
        _assert_widgets_render(page, name)
        done, control = _move_a_control(page)
        uploaded = _upload_in_browser(page)
        ARTIFACTS.mkdir(exist_ok=True)  # what the student sees, for a look by eye
        control.evaluate_handle("(e) => e.closest('.jp-Cell')").as_element().screenshot(
            path=str(ARTIFACTS / f"browser_{Path(name).stem}_widget.png"))
        print(f"{name}: {state['done']} code cells ran; {done}; {uploaded + '; ' if uploaded else ''}"
              f"blocked requests: {len(page.blocked)}")
    except BaseException:
        shot = _save_artifacts(page, lab, name)
        print(f"screenshot: {shot}")
        raise
