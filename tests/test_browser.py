"""The affinity explorer, the ablation widget and the rendered lecture, tested where students use them: a real
headless Chromium.

A JupyterLab 4 server (127.0.0.1, random port and token, everything in a temporary folder) opens a copy of
chapter 1 with PROFILE="smoke" and INTERACTIVE=True injected after its parameters cell (as papermill does),
runs all cells, then clicks an object pixel of the explorer's target frame and moves its sliders, reading the
result back from the kernel and from the page. Meanwhile `python -m vos_lab lectures` renders chapter 1 in the
smoke profile; its HTML is opened from disk. Another server opens a small notebook with chapter 7's ablation
widget (smoke profile, a small DAVIS folder), moves a knob and switches a component off, and reads the J&F line
from the page and the kernel. Chromium comes from the distribution (`make test` installs it as
root when missing), Playwright drives it through `executable_path`, nothing is downloaded. Select these tests
with `-m browser`; a screenshot of the page is kept in $VOS_LAB_ARTIFACTS (default: a temporary folder) when
one fails, and one of the explorer after the click and of the ablation widget always.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
from helpers import write_davis2017
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from playwright.sync_api import Locator, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

REPOSITORY = Path(__file__).resolve().parents[1]
CHAPTER = REPOSITORY / "notebooks" / "01_correspondence_propagation.ipynb"
ARTIFACTS = Path(os.environ.get("VOS_LAB_ARTIFACTS") or Path(tempfile.gettempdir()) / "vos_lab-browser-artifacts")
LAB_SETTINGS = {  # every cell in the page (no virtual scrolling), no news or update pop-ups
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}

# Run `code` in the notebook's kernel (outside any cell) and return what it printed.
KERNEL_JS = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, store_history: false});
  let out = "";
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === "stream") out += msg.content.text;
    if (msg.header.msg_type === "error") out += "ERROR " + msg.content.ename + ": " + msg.content.evalue;
  };
  await future.done;
  return out;
}"""

# Progress of "run all": executed code cells, their number, and the first error output.
PROGRESS_JS = """() => {
  const model = window.jupyterapp.shell.currentWidget.content.model;
  let done = 0, code = 0, error = null;
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== "code") continue;
    code += 1;
    if (cell.executionCount !== null) done += 1;
    for (const out of cell.outputs.toJSON())
      if (out.output_type === "error" && !error) error = `cell ${i}: ${out.ename}: ${out.evalue}`;
  }
  return {done, code, error};
}"""


def chromium() -> str:
    """The distribution's Chromium ($VOS_LAB_CHROMIUM, else `chromium` or `chromium-browser` on PATH)."""
    found = os.environ.get("VOS_LAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("error: Chromium not found for the browser tests: install it with `apt-get install -y chromium` "
                    "(`make test` does, as root) or set VOS_LAB_CHROMIUM", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lecture(tmp_path_factory) -> Iterator[subprocess.Popen]:
    """Chapter 1 rendered in the smoke profile by `python -m vos_lab lectures`, started at once so it runs while
    the JupyterLab test does (its own course folder: the two executions share no cache)."""
    folder = tmp_path_factory.mktemp("lecture")
    env = {**os.environ, "VOS_LAB_HOME": str(folder / "home"), "OMP_NUM_THREADS": "1"}
    with open(folder / "log.txt", "w") as log:
        command = [sys.executable, "-m", "vos_lab", "lectures", "--profile", "smoke", "--chapters", "1",
                   "--out", str(folder / "out"), "--no-progress", "--notebooks", str(CHAPTER.parent)]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    process.folder = folder
    yield process
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield instance
        instance.close()


@contextlib.contextmanager
def jupyter_lab(root: Path) -> Iterator[Callable[[str], str]]:
    """A JupyterLab server on 127.0.0.1 with a random port and token, serving `root` (with the course's lab
    settings); yields notebook name -> its URL."""
    for name, settings in LAB_SETTINGS.items():
        (root / ".settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / ".settings" / name).write_text(json.dumps(settings))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JUPYTER_CONFIG_DIR": str(root / ".config"),
           "JUPYTER_DATA_DIR": str(root / ".data"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
    log = open(root / ".server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.user_settings_dir={root / '.settings'}", f"--LabApp.workspaces_dir={root / '.workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(root / '.server.log').read_text()[-2000:]}", pytrace=False)
            time.sleep(0.3)
    try:
        yield lambda notebook: f"{base}/lab/tree/{notebook}?token={token}&reset"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lecture) -> Iterator[str]:
    """JupyterLab serving a folder that holds chapter 1 with the smoke profile and live widgets; yields the
    notebook's URL."""
    root = tmp_path_factory.mktemp("lab")
    notebook = parameterize_notebook(load_notebook_node(str(CHAPTER)), {"PROFILE": "smoke", "INTERACTIVE": True},
                                     kernel_name="python3", language="python")
    nbformat.write(notebook, root / CHAPTER.name)
    with jupyter_lab(root) as url:
        yield url(CHAPTER.name)


class Console:
    """Errors the page reports: console.error messages and uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        page.on("pageerror", lambda error: self.errors.append(f"exception: {error}"))


def kept_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path, full_page=True)
    return path


def run_all(page: Page, timeout: float = 240, name: str = "chapter 1") -> None:
    """Run every cell (JupyterLab's own command) and wait until each code cell has run; fail on an error
    (`name`: the notebook, in messages)."""
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel", timeout=60_000)
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                           " === 'idle'", timeout=60_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + timeout
    while True:
        progress = page.evaluate(PROGRESS_JS)
        if progress["error"]:
            pytest.fail(f"{name} failed in JupyterLab: {progress['error']}", pytrace=False)
        if progress["done"] == progress["code"]:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{name} ran {progress['done']} of {progress['code']} code cells in {timeout} s")
        time.sleep(0.5)


def kernel(page: Page, code: str):
    """What `code` prints as JSON on its last line, run in the notebook's kernel."""
    out = page.evaluate(KERNEL_JS, code)
    assert "ERROR" not in out, out
    return json.loads(out.strip().splitlines()[-1])


def state_when(page: Page, condition, message: str, timeout: float = 20) -> dict:
    """The explorer's state (`STATE`) once `condition(state)` holds: the kernel may answer between two control
    messages, or while it still handles one."""
    deadline = time.monotonic() + timeout
    while not condition(state := kernel(page, STATE)):
        assert time.monotonic() < deadline, f"{message}: {state}"
        time.sleep(0.2)
    return state


STATE = """import json as _json
_pixel = explorer.pixel
_views = {_name: explorer.view(_pixel, encoder=_name) for _name in explorer.shown}
_c = explorer.config
print(_json.dumps({"pixel": list(_pixel), "shown": explorer.shown, "config": [_c.temperature, _c.topk, _c.radius],
                   "title": explorer.fig._suptitle.get_text(),
                   "label": {n: v.label.round(4).tolist() for n, v in _views.items()},
                   "attention": {n: float((v.attention ** 2).sum()) for n, v in _views.items()}}))
"""

# The object-centre preset whose label differs most from the current pixel's, and where it is on the page: its
# fraction of the figure's width and height (from the top), in the first row's target panel.
CLICK_TARGET = """import json as _json
import numpy as _np
_now = explorer.view().label
_pixel = max(explorer.preset_pixels()[:-1], key=lambda p: _np.abs(explorer.view(p).label - _now).sum())
_x, _y = explorer.axes[0][0].transData.transform((_pixel[1] + 0.5, _pixel[0] + 0.5))
_box = explorer.fig.bbox
print(_json.dumps({"pixel": list(_pixel), "fx": _x / _box.width, "fy": 1 - _y / _box.height,
                   "gap": float(_np.abs(explorer.view(_pixel).label - _now).sum()),
                   "id": int(explorer.masks[explorer.target][_pixel])}))
"""


def pixels(canvas: Locator) -> str:
    """What the figure's canvas shows (its pixels, as a data URL)."""
    return canvas.evaluate("c => c.toDataURL()")


def changed(canvas: Locator, image: str, message: str, timeout: float = 15) -> None:
    """Wait until the canvas shows something else than `image` (from `pixels`); fail with `message`."""
    deadline = time.monotonic() + timeout
    while pixels(canvas) == image:
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def slider(page: Page, description: str):
    return page.locator(".widget-slider", has=page.locator(".widget-label", has_text=description)).first


def test_explorer_in_jupyterlab_follows_clicks_and_sliders(browser, lab):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    console = Console(page)
    start = time.monotonic()
    try:
        page.goto(lab)
        run_all(page)
        ran = time.monotonic()
        canvas = page.locator(".jupyter-matplotlib-canvas-div canvas").first
        canvas.scroll_into_view_if_needed()
        canvas.wait_for(state="visible")
        assert "Click a pixel" in page.locator(".widget-html").last.inner_text()  # live: clicking is offered
        before, image_before = kernel(page, STATE), pixels(canvas)
        where = kernel(page, CLICK_TARGET)
        assert where["id"] > 0 and where["gap"] > 0.1  # an object pixel whose label differs from the current one
        box = canvas.bounding_box()
        page.mouse.click(box["x"] + where["fx"] * box["width"], box["y"] + where["fy"] * box["height"])
        near = lambda s: all(abs(a - b) <= 1 for a, b in zip(s["pixel"], where["pixel"], strict=True))  # noqa: E731
        after = state_when(page, near, f"the click at {where} did not select its pixel")
        for name in before["label"]:  # every encoder's row: heat maps and the pixel's label follow the click
            assert after["attention"][name] != before["attention"][name], (name, before, after, where)
        assert sum(abs(a - b) for a, b in zip(after["label"]["lab"], before["label"]["lab"], strict=True)) > 0.1
        changed(canvas, image_before, "the figure did not change with the click")  # what the student sees
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator(".jp-OutputArea-output", has=canvas).screenshot(path=ARTIFACTS / "explorer_after_click.png")

        moves = {"temperature": ("ArrowRight", 5, "0.316", 10 ** -0.5), "top-k": ("ArrowRight", 3, "8", 8),
                 "radius": ("ArrowLeft", 10, "2", 2)}
        for index, (description, (key, times, shown, value)) in enumerate(moves.items()):
            image = pixels(canvas)
            handle = slider(page, description).locator(".noUi-handle")
            handle.focus()
            for _ in range(times):
                handle.press(key)
            expect(slider(page, description).locator(".widget-readout")).to_have_text(shown)
            # ipywidgets sends the latest value once the kernel is idle again
            state_when(page, lambda s: s["config"][index] == pytest.approx(value, rel=1e-3),  # noqa: B023
                       f"the kernel did not get {description} = {value}")
            changed(canvas, image, f"the figure did not change with {description}")
        final = kernel(page, STATE)
        assert final["config"] == [pytest.approx(10 ** -0.5, rel=1e-3), 8, 2]
        assert "temperature 0.316228, top-k 8, radius 2" in final["title"]
        assert all(len(final["label"][n]) == len(after["label"][n]) for n in final["label"])
        assert final["attention"]["lab"] != after["attention"]["lab"]
        height = canvas.bounding_box()["height"]  # two rows: lab, then the random CNN on the same pixel
        page.locator(".widget-dropdown", has=page.locator("label", has_text="compare with")).locator("select") \
            .select_option(label="none")
        state_when(page, lambda s: s["shown"] == ["lab"], "the comparison did not go")
        deadline = time.monotonic() + 20
        while canvas.bounding_box()["height"] > 0.8 * height:  # one row left
            assert time.monotonic() < deadline, "the figure kept its two rows"
            time.sleep(0.2)
        widget_errors = [e for e in console.errors if "favicon" not in e]
        assert not widget_errors, widget_errors
        print(f"chapter 1 opened and ran in JupyterLab: {ran - start:.0f} s; explorer checks: "
              f"{time.monotonic() - ran:.0f} s")
    except BaseException:
        print(f"screenshot: {kept_screenshot(page, 'jupyterlab-failure.png')}")
        raise
    finally:
        page.close()


def test_rendered_lecture_shows_the_static_explorer_without_click_instructions(browser, lecture):
    try:
        lecture.wait(timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("rendering chapter 1 took more than 240 s", pytrace=False)
    log = (lecture.folder / "log.txt").read_text()
    assert lecture.returncode == 0, log[-3000:]
    html = lecture.folder / "out" / f"{CHAPTER.stem}.html"
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    console = Console(page)
    # No network here: the exporter's CDN scripts (require.js, MathJax) get an empty answer, so what is checked
    # is the page itself; everything else comes from the file (images are embedded).
    external = []
    page.route(lambda url: not url.startswith("file:"), lambda route: external.append(route.request.url)
               or route.fulfill(body="", content_type="text/javascript"))
    try:
        page.goto(html.as_uri(), wait_until="load")
        assert all("cdnjs" in url for url in external), external
        images = page.evaluate("() => [...document.images].map(i => [i.complete && i.naturalWidth > 0,"
                               " i.naturalWidth, i.naturalHeight])")
        assert images and all(ok for ok, _, _ in images), images
        cell = page.locator(".jp-Cell", has=page.locator(".jp-InputArea", has_text="explorer.static_figure()"))
        figure = cell.locator(".jp-OutputArea img")
        assert figure.count() == 1 and figure.evaluate("i => i.naturalHeight") > 400  # the static explorer figure
        assert "click" not in page.locator("body").inner_text().lower()
        assert not console.errors, console.errors
    except BaseException:
        print(f"screenshot: {kept_screenshot(page, 'lecture-failure.png')}")
        raise
    finally:
        page.close()


# A notebook with the ablation widget as chapter 7 uses it: the setup cell, then the widget on a small DAVIS folder.
ABLATION_CELLS = [
    'PROFILE = "smoke"\nSEED = 0\nDATA_ROOT = {davis!r}\nDEVICE = "cpu"\nINTERACTIVE = True\nPROFILE_SET = {{}}',
    "from vos_lab.course.ablation import AblationWidget\nfrom vos_lab.course.notebook import setup\n\n"
    "lab = setup(globals())",
    'ablation = AblationWidget(lab, ["embedded"], method="corrflow")\nablation.run()\n'
    "display(ablation.interactive()) if INTERACTIVE else ablation.static_figure();",
]
ABLATION_STATE = """import json as _json
print(_json.dumps({"knobs": ablation.knobs, "options": ablation.options, "summary": ablation.summary()}))
"""


@pytest.fixture(scope="module")
def ablation_lab(tmp_path_factory) -> Iterator[str]:
    """JupyterLab serving a small notebook that shows the ablation widget live; yields the notebook's URL."""
    root = tmp_path_factory.mktemp("ablation-lab")
    davis = write_davis2017(root / ".davis", frames=4, size=(48, 64))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell.format(davis=str(davis)))
                                               for cell in ABLATION_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "ablation.ipynb")
    with jupyter_lab(root) as url:
        yield url("ablation.ipynb")


def test_ablation_widget_in_jupyterlab_follows_knobs_and_components(browser, ablation_lab):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    console = Console(page)
    try:
        page.goto(ablation_lab)
        run_all(page, timeout=120, name="the ablation notebook")
        label = page.locator(".widget-html", has_text="J&F").first
        label.wait_for(state="visible")
        first = label.inner_text()
        assert first.startswith("J&F ") and "corrflow (base) | default protocol" in first, first
        assert page.locator(".jp-OutputArea-output img").count() >= 1  # the figure under the controls

        handle = slider(page, "top-k").locator(".noUi-handle")
        handle.focus()
        for _ in range(3):
            handle.press("ArrowRight")
        expect(slider(page, "top-k").locator(".widget-readout")).to_have_text("8")
        expect(label).to_contain_text("top-k 8", timeout=30_000)  # the J&F of the new protocol
        state = kernel(page, ABLATION_STATE)
        assert state["knobs"]["topk"] == 8 and state["options"] == {}
        assert label.inner_text() == state["summary"] != first

        page.locator(".widget-checkbox", has_text="cycle consistency").locator("input").click()
        expect(label).to_contain_text("corrflow (cycle_weight=0) | top-k 8", timeout=60_000)  # a new variant
        state = kernel(page, ABLATION_STATE)
        assert state["options"] == {"cycle_weight": 0.0} and label.inner_text() == state["summary"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "ablation_widget.png", full_page=True)
        errors = [e for e in console.errors if "favicon" not in e]
        assert not errors, errors
    except BaseException:
        print(f"screenshot: {kept_screenshot(page, 'ablation-failure.png')}")
        raise
    finally:
        page.close()
