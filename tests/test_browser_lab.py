"""The JupyterLab extension in a real browser (issue 13): from a file in a bucket to the code that reads it.

The demo platform (Ceph RGW, OIDC provider, OpenBao, JupyterHub, the datalake contents manager)
with the prebuilt ``valeria-datalake`` JupyterLab extension (``make labextension``), driven in
headless Chromium with clipboard permissions. Screenshots of each step in test-artifacts/browser/.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
from valeria_platform.seed import ALICE_BUCKET, CSV_KEY, SHARED_BUCKET

from tests.test_browser_demo import _log_in, _open, _run_first_code_cell, _wait_for_listing, step

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dump_logs_on_failure")]

#: a bucket alice shares with bob by bucket policy, not in the admin's shared list
GIFT_BUCKET = "alice-for-bob"
HERE_FOLDER = "here demo"
NEWS = "official Jupyter news"


def _cell_notebook(source: str) -> bytes:
    cell = {"cell_type": "code", "execution_count": None, "id": "c0ffee01", "metadata": {}, "outputs": [],
            "source": source}  # fmt: skip
    nb = {"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
          "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    return json.dumps(nb).encode()


def _context_menu(page: Any, name: str) -> Any:
    """Right-click the listing item ``name``; returns the open context menu."""
    page.locator(".jp-DirListing-item", has_text=name).first.click(button="right")
    menu = page.locator(".lm-Menu").last
    menu.wait_for(timeout=10_000)
    return menu


def _menu_commands(menu: Any) -> list[str]:
    return [c for c in menu.locator(".lm-Menu-item").evaluate_all("n => n.map(e => e.dataset.command)") if c]


def _clipboard(page: Any) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def _wait_clipboard(page: Any, want: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    text = _clipboard(page)
    while want not in text and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        text = _clipboard(page)
    return text


def _no_news_prompt(page: Any, base: str, wait_ms: int = 4000) -> None:
    """No "official Jupyter news?" toast, and nobody answered one: the login helper clicks its "No",
    which stores ``fetchNews`` in the user's settings; the platform's default says "false"."""
    page.wait_for_timeout(wait_ms)  # the prompt comes a moment after JupyterLab starts
    toasts = page.locator(".jp-toast-message, .Toastify__toast").all_inner_texts()
    assert not any(NEWS in t for t in toasts), toasts
    r = page.request.get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification")
    assert r.ok, r.status
    settings = r.json()
    assert settings["schema"]["properties"]["fetchNews"]["default"] == "false", settings["schema"]
    assert "fetchNews" not in (settings.get("settings") or {}), "the news prompt was shown and answered"


def _home(page: Any, expect: str) -> None:
    page.locator(".jp-BreadCrumbs-home").click()
    _wait_for_listing(page, {expect})


@pytest.fixture(scope="module")
def gift_bucket(demo_platform: Any) -> str:
    s3 = demo_platform.ceph.site().client("alice")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=GIFT_BUCKET)
    s3.put_object(Bucket=GIFT_BUCKET, Key="for-bob.csv", Body=b"x,y\n1,2\n")
    demo_platform.ceph.share_read_only("alice", GIFT_BUCKET, "bob")
    return GIFT_BUCKET


def test_alice_goes_from_a_bucket_file_to_the_code_that_reads_it(
    demo_platform: Any, chromium: Any, shot: Any
) -> None:
    s3 = demo_platform.ceph.site().client("alice")
    s3.put_object(Bucket=ALICE_BUCKET, Key=f"{HERE_FOLDER}/beside.csv", Body=b"a,b\n1,2\n3,4\n5,6\n")
    here_code = ("import pandas as pd, valeria_datalake\n"
                 "print('here:', valeria_datalake.here())\n"
                 "df = pd.read_csv(valeria_datalake.here('beside.csv'))\n"
                 "print('rows beside:', len(df))")  # fmt: skip
    s3.put_object(Bucket=ALICE_BUCKET, Key=f"{HERE_FOLDER}/here.ipynb", Body=_cell_notebook(here_code))

    context = chromium.new_context(viewport={"width": 1400, "height": 900},
                                   permissions=["clipboard-read", "clipboard-write"])  # fmt: skip
    page = context.new_page()
    try:
        _log_in(page, demo_platform, shot, "alice", "lab-alice")
        with step(page, shot, "lab-alice-4-no-news-prompt-bucket-icons-read-only-mark"):
            _no_news_prompt(page, f"{demo_platform.hub_url}/user/alice")
            _wait_for_listing(page, {f"datalake_{ALICE_BUCKET}", f"datalake_{SHARED_BUCKET}"})
            page.wait_for_selector(".jp-DirListing-item.jp-valeria-bucket", timeout=15_000)
            ro = page.locator(".jp-DirListing-item", has_text=f"datalake_{SHARED_BUCKET}").first
            assert "jp-valeria-readonly" in (ro.get_attribute("class") or "")
            assert "Read-only bucket" in (ro.get_attribute("title") or "")
            own = page.locator(".jp-DirListing-item", has_text=f"datalake_{ALICE_BUCKET}").first
            assert "jp-valeria-bucket" in (own.get_attribute("class") or "")
            assert "jp-valeria-readonly" not in (own.get_attribute("class") or "")
            assert own.locator("svg").count(), "the bucket folder has its own icon"

        with step(page, shot, "lab-alice-5-open-in-terminal-not-offered-in-a-bucket"):
            menu = _context_menu(page, f"datalake_{ALICE_BUCKET}")
            commands = _menu_commands(menu)
            assert "terminal:open-folder-in-terminal" not in commands, commands
            assert "valeria-datalake:copy-s3-uri" in commands, commands
            page.keyboard.press("Escape")
            menu = _context_menu(page, "scratch")  # a folder on disk keeps it
            commands = _menu_commands(menu)
            assert "terminal:open-folder-in-terminal" in commands, commands
            assert "valeria-datalake:copy-s3-uri" not in commands, commands
            page.keyboard.press("Escape")

        csv_folder, csv_name = CSV_KEY.rsplit("/", 1)
        uri = f"s3://{ALICE_BUCKET}/{CSV_KEY}"
        with step(page, shot, "lab-alice-6-copy-s3-uri"):
            _open(page, f"datalake_{ALICE_BUCKET}")
            _wait_for_listing(page, {csv_folder})
            _open(page, csv_folder)
            _wait_for_listing(page, {csv_name})
            menu = _context_menu(page, csv_name)
            shot(page, "lab-alice-6a-context-menu")
            menu.locator('.lm-Menu-item[data-command="valeria-datalake:copy-s3-uri"]').click()
            assert _wait_clipboard(page, uri) == uri

        with step(page, shot, "lab-alice-7-copy-code-to-read-it"):
            menu = _context_menu(page, csv_name)
            menu.locator('.lm-Menu-item[data-command="valeria-datalake:copy-read-code"]').click()
            snippet = _wait_clipboard(page, "read_csv")
            assert snippet == f'import pandas as pd\n\ndf = pd.read_csv("{uri}")\ndf', snippet

        with step(page, shot, "lab-alice-8-snippet-pasted-and-run-in-a-new-notebook"):
            _home(page, "scratch")
            page.locator(".jp-FileBrowser [data-command='launcher:create'], "
                         ".jp-FileBrowser jp-button[title='New Launcher'], "
                         ".jp-FileBrowser [title='New Launcher']").first.click()  # fmt: skip
            page.locator(".jp-LauncherCard[data-category='Notebook']:visible").first.click()
            page.wait_for_selector(".jp-NotebookPanel:visible .jp-CodeCell .cm-content", timeout=60_000)
            editor = page.locator(".jp-NotebookPanel:visible .jp-CodeCell .cm-content").first
            editor.click()
            page.keyboard.press("Control+v")
            page.wait_for_timeout(500)
            if "read_csv" not in editor.inner_text():  # headless paste unavailable: type the clipboard
                page.keyboard.insert_text(_clipboard(page))
            assert "read_csv" in editor.inner_text()
            text = _run_first_code_cell(page, "temperature_c")
            assert "humidity_pct" in text and "96 rows" in text, text

        with step(page, shot, "lab-alice-9-bucket-notebook-reads-the-file-beside-it-with-here"):
            _home(page, f"datalake_{ALICE_BUCKET}")
            _open(page, f"datalake_{ALICE_BUCKET}")
            _wait_for_listing(page, {HERE_FOLDER})
            _open(page, HERE_FOLDER)
            _wait_for_listing(page, {"here.ipynb"})
            _open(page, "here.ipynb")
            page.wait_for_selector(".jp-NotebookPanel:visible .jp-CodeCell", timeout=60_000)
            page.wait_for_timeout(1000)
            text = _run_first_code_cell(page, "rows beside:")
            assert f"here: s3://{ALICE_BUCKET}/{HERE_FOLDER}/" in text, text
            assert "rows beside: 3" in text, text

        with step(page, shot, "lab-alice-10-read-only-file-opens-read-only"):
            _home(page, f"datalake_{SHARED_BUCKET}")
            _open(page, f"datalake_{SHARED_BUCKET}")
            _wait_for_listing(page, {"README.md"})
            _open(page, "README.md")
            page.locator(".jp-FileEditor .cm-content").first.wait_for(timeout=30_000)
            # JupyterLab itself disables Save for a file the server lists as not writable
            page.get_by_text("file is read-only").first.wait_for(timeout=10_000)

        with step(page, shot, "lab-alice-11-write-into-read-only-bucket-shows-the-server-message"):
            page.locator(".jp-FileBrowser [data-command='filebrowser:create-new-directory']").first.click()
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for(timeout=30_000)
            message = dialog.inner_text()
            assert f"Read-only bucket, cannot write: datalake_{SHARED_BUCKET}/" in message, message
        page.locator(".jp-Dialog button").last.click()
    finally:
        context.close()


def test_bob_adds_a_bucket_shared_with_him_and_removes_it(
    demo_platform: Any, chromium: Any, shot: Any, gift_bucket: str
) -> None:
    folder = f"datalake_{gift_bucket}"
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()

    def open_dialog() -> Any:
        page.locator(
            ".jp-FileBrowser .jp-Toolbar [data-command='valeria-datalake:add-shared-bucket']"
        ).first.click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator(".jp-valeria-SharedBuckets-input").wait_for(timeout=10_000)
        return dialog

    def try_add(dialog: Any, name: str, expect: str) -> str:
        dialog.locator(".jp-valeria-SharedBuckets-input").fill(name)
        dialog.locator(".jp-valeria-SharedBuckets-addButton").click()
        status = dialog.locator(".jp-valeria-SharedBuckets-status")
        deadline = time.monotonic() + 30
        while expect not in status.inner_text() and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        return status.inner_text()

    try:
        _log_in(page, demo_platform, shot, "bob", "lab-bob")
        with step(page, shot, "lab-bob-4-shared-bucket-not-listed-yet"):
            _no_news_prompt(page, f"{demo_platform.hub_url}/user/bob", 1000)
            names = _wait_for_listing(page, {f"datalake_{SHARED_BUCKET}"})
            assert folder not in names, names

        with step(page, shot, "lab-bob-5-bad-name-and-unreadable-bucket-refused"):
            dialog = open_dialog()
            said = try_add(dialog, "No Such Bucket!", "Not a valid bucket name")
            assert "Not a valid bucket name" in said, said
            said = try_add(dialog, ALICE_BUCKET, "cannot read it")
            assert said == f"No such bucket, or your credentials cannot read it: {ALICE_BUCKET}", said

        with step(page, shot, "lab-bob-6-bucket-added"):
            said = try_add(dialog, gift_bucket, "Added")
            assert said == f"Added: {folder}", said
            dialog.locator(f"li[data-bucket='{gift_bucket}']").wait_for(timeout=10_000)  # listed for removal
            dialog.locator("button.jp-mod-accept").last.click()
            names = _wait_for_listing(page, {folder})
            assert folder in names, names
            item = page.locator(".jp-DirListing-item", has_text=folder).first
            page.wait_for_timeout(500)
            assert "jp-valeria-readonly" in (item.get_attribute("class") or "")

        with step(page, shot, "lab-bob-7-still-there-after-reload"):
            page.reload()
            page.wait_for_selector(".jp-DirListing-item", timeout=60_000)
            page.locator(".jp-BreadCrumbs-home").click()
            names = _wait_for_listing(page, {folder})
            assert folder in names, names
            _open(page, folder)
            assert "for-bob.csv" in _wait_for_listing(page, {"for-bob.csv"})
            page.locator(".jp-BreadCrumbs-home").click()

        with step(page, shot, "lab-bob-8-bucket-removed"):
            dialog = open_dialog()
            dialog.locator(f"li[data-bucket='{gift_bucket}'] .jp-valeria-SharedBuckets-remove").click()
            status = dialog.locator(".jp-valeria-SharedBuckets-status")
            deadline = time.monotonic() + 20
            while "Removed" not in status.inner_text() and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert status.inner_text() == f"Removed: {folder}"
            dialog.locator("button.jp-mod-accept").last.click()
            deadline = time.monotonic() + 30
            names = _wait_for_listing(page, {f"datalake_{SHARED_BUCKET}"})
            while folder in names and time.monotonic() < deadline:
                page.wait_for_timeout(300)
                names = _wait_for_listing(page, {f"datalake_{SHARED_BUCKET}"})
            assert folder not in names, names
    finally:
        context.close()
