"""The demo platform in a real browser (issue 5): what a researcher and an admin see and do.

Everything here is real: Ceph RGW, the OIDC provider's login page, OpenBao, JupyterHub with the
project's authenticator and local spawner, the datalake contents manager, JupyterLab in headless
Chromium. Screenshots of each step go to test-artifacts/browser/; a failure dumps every log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from valeria_platform.seed import (
    ALICE_BUCKET,
    ALICE_SPARK_BUCKET,
    BOB_BUCKET,
    NOTEBOOK_KEY,
    SHARED_BUCKET,
    csv_mean_temperature,
)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dump_logs_on_failure")]

UPLOAD_NAME = "upload-5MiB.bin"
UPLOAD_SIZE = 5 * 1024 * 1024


@contextlib.contextmanager
def step(page: Any, shot: Any, name: str) -> Iterator[None]:
    """One step of the flow: a screenshot when it is done, or of the failure."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            shot(page, f"FAILED-{name}")
        raise
    _dismiss_news(page)
    shot(page, name)


def _dismiss_news(page: Any) -> None:
    # JupyterLab's toast asking whether to fetch news: answer it if it is there, never wait for it
    with contextlib.suppress(Exception):
        toast = page.locator(".jp-toast-button", has_text="No")
        if toast.count():
            toast.first.click(timeout=1000)


def _log_in(page: Any, platform: Any, shot: Any, user: str, prefix: str) -> None:
    with step(page, shot, f"{prefix}-1-hub-login-page"):
        page.goto(f"{platform.hub_url}/hub/login")
        page.locator("#login-main a").click()
    with step(page, shot, f"{prefix}-2-idp-login-form"):
        page.wait_for_selector("#kc-form-login", timeout=30_000)
        assert page.url.startswith(platform.oidc.issuer), "the login form must be the IdP's own page"
        page.fill("#username", user)
        page.fill("#password", platform.password)
    with step(page, shot, f"{prefix}-3-jupyterlab"):
        page.click("#kc-login")
        page.wait_for_url(f"**/user/{user}/lab**", timeout=120_000)
        page.wait_for_selector(".jp-DirListing-item", timeout=60_000)
        _dismiss_news(page)
        page.locator(".jp-BreadCrumbs-home").click()  # a restored workspace may open elsewhere


def _run_first_code_cell(page: Any, expect: str, timeout: float = 180) -> str:
    """Run the notebook's first code cell and return its output once it contains ``expect``.

    JupyterLab may ask which kernel to use (answered with its proposal); a run that the kernel
    start swallowed (prompt still ``[ ]``) is started again."""
    cell = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").first  # the open tab
    output = cell.locator(".jp-OutputArea-output")
    deadline = time.monotonic() + timeout
    last_try = 0.0
    while time.monotonic() < deadline:
        accept = page.locator(".jp-Dialog button.jp-mod-accept")
        if accept.count():
            with contextlib.suppress(Exception):
                accept.first.click(timeout=2000)
            last_try = time.monotonic()
        if output.count() and expect in output.first.inner_text():
            return output.first.inner_text()
        prompt = cell.locator(".jp-InputPrompt").inner_text().strip()
        if prompt in ("[ ]:", "[]:", "") and time.monotonic() - last_try > 8:
            cell.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            last_try = time.monotonic()
        page.wait_for_timeout(400)
    raise AssertionError(
        f"the cell never printed {expect!r}; output: "
        f"{output.first.inner_text() if output.count() else '(none)'}"
    )


def _listing(page: Any) -> list[str]:
    return [t.strip() for t in page.locator(".jp-DirListing-itemName").all_inner_texts()]


def _wait_for_listing(page: Any, expected: set[str], timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    names = _listing(page)
    while not expected <= set(names) and time.monotonic() < deadline:
        page.wait_for_timeout(300)
        names = _listing(page)
    return names


def _open(page: Any, name: str) -> None:
    page.locator(".jp-DirListing-item", has_text=name).first.dblclick()


def test_alice_works_with_her_datalake(demo_platform: Any, chromium: Any, shot: Any, tmp_path: Any) -> None:
    site = demo_platform.ceph.site()
    s3 = site.client("alice")
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    api_bodies: list[tuple[str, str]] = []

    def keep_api_body(response: Any) -> None:
        # every JSON answer of the hub and the notebook server's APIs, to check for leaked secrets
        if "/api/" in response.url and "json" in (response.headers.get("content-type") or ""):
            with contextlib.suppress(Exception):
                api_bodies.append((response.url, response.text()))

    context.on("response", keep_api_body)
    page = context.new_page()
    try:
        _log_in(page, demo_platform, shot, "alice", "alice")

        with step(page, shot, "alice-4-root-listing"):
            expected = {"scratch", f"datalake_{ALICE_BUCKET}", f"datalake_{ALICE_SPARK_BUCKET}",
                        f"datalake_{SHARED_BUCKET}"}  # fmt: skip
            names = _wait_for_listing(page, expected)
            assert expected <= set(names), names
            assert f"datalake_{BOB_BUCKET}" not in names, "bob's private bucket must not be shown to alice"

        with step(page, shot, "alice-5-spark-partitions-without-markers"):
            _open(page, f"datalake_{ALICE_SPARK_BUCKET}")
            assert "events" in _wait_for_listing(page, {"events"})
            _open(page, "events")
            names = _wait_for_listing(page, {"year=2024", "year=2025"})
            assert {"year=2024", "year=2025"} <= set(names), names
            page.locator(".jp-BreadCrumbs-home").click()
            _wait_for_listing(page, {f"datalake_{ALICE_BUCKET}"})

        with step(page, shot, "alice-5b-shared-bucket-readable"):
            # shared by bucket policy: absent from alice's ListBuckets, announced by the hub
            _open(page, f"datalake_{SHARED_BUCKET}")
            names = _wait_for_listing(page, {"reference", "README.md"})
            assert {"reference", "README.md"} <= set(names), names
            page.locator(".jp-BreadCrumbs-home").click()
            _wait_for_listing(page, {f"datalake_{ALICE_BUCKET}"})

        with step(page, shot, "alice-6-notebook-from-bucket-ran"):
            _open(page, f"datalake_{ALICE_BUCKET}")
            _wait_for_listing(page, {NOTEBOOK_KEY})
            _open(page, NOTEBOOK_KEY)
            page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=60_000)
            text = _run_first_code_cell(page, "rows=")
            assert f"rows=96 mean_temperature={csv_mean_temperature():.3f}" in text, text

        with step(page, shot, "alice-7-notebook-saved-to-bucket"):
            page.keyboard.press("Control+s")
            deadline = time.monotonic() + 30
            saved: dict = {}
            while time.monotonic() < deadline:
                body = s3.get_object(Bucket=ALICE_BUCKET, Key=NOTEBOOK_KEY)["Body"].read()
                saved = json.loads(body)
                outputs = [o for c in saved["cells"] for o in c.get("outputs", [])]
                if any("rows=96" in "".join(o.get("text", [])) for o in outputs):
                    break
                page.wait_for_timeout(500)
            else:
                pytest.fail(
                    f"the saved notebook in s3://{ALICE_BUCKET}/{NOTEBOOK_KEY} has no output: {saved}"
                )

        with step(page, shot, "alice-8-uploaded-5MiB-into-bucket"):
            data = os.urandom(UPLOAD_SIZE)
            local = tmp_path / UPLOAD_NAME
            local.write_bytes(data)
            with page.expect_file_chooser() as chooser:
                page.locator("jp-button[title='Upload Files'], [title='Upload Files']").first.click()
            chooser.value.set_files(str(local))
            deadline = time.monotonic() + 120
            head = None
            while time.monotonic() < deadline:
                with contextlib.suppress(s3.exceptions.ClientError):
                    head = s3.head_object(Bucket=ALICE_BUCKET, Key=UPLOAD_NAME)
                    if head["ContentLength"] == UPLOAD_SIZE:
                        break
                page.wait_for_timeout(500)
            assert head is not None, "the upload never reached the bucket"
            assert head["ContentLength"] == UPLOAD_SIZE
            got = s3.get_object(Bucket=ALICE_BUCKET, Key=UPLOAD_NAME)["Body"].read()
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
            assert UPLOAD_NAME in _wait_for_listing(page, {UPLOAD_NAME})
            # JupyterLab sent it as 1 MiB chunks (the path that loses data in jupyter-fs)
            hub_log = (demo_platform.logs_dir / "hub.log").read_text()
            target = f"{ALICE_BUCKET}/{UPLOAD_NAME}"
            puts = [ln for ln in hub_log.splitlines() if " PUT " in ln and target in ln]
            assert len(puts) >= UPLOAD_SIZE // (1024 * 1024), puts

        with step(page, shot, "alice-9-no-admin-panel"):
            r = page.goto(f"{demo_platform.hub_url}/hub/admin")
            assert r is not None and r.status == 403
    finally:
        context.close()
    # nothing the browser received carries an S3 secret key (jupyter-fs sends them to the browser)
    assert len(api_bodies) > 10 and any("/api/contents" in url for url, _ in api_bodies)
    secrets = [u.secret_key for u in demo_platform.ceph.users.values()] + [demo_platform.client_secret]
    for url, body in api_bodies:
        for secret in secrets:
            assert secret not in body, f"a secret reached the browser in {url}"


def test_bob_sees_the_admin_panel(demo_platform: Any, chromium: Any, shot: Any) -> None:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        _log_in(page, demo_platform, shot, "bob", "bob")
        with step(page, shot, "bob-4-own-buckets-only"):
            expected = {"scratch", f"datalake_{BOB_BUCKET}", f"datalake_{SHARED_BUCKET}"}
            names = _wait_for_listing(page, expected)
            assert expected <= set(names), names
            assert f"datalake_{ALICE_BUCKET}" not in names
        with step(page, shot, "bob-5-admin-panel"):
            r = page.goto(f"{demo_platform.hub_url}/hub/admin")
            assert r is not None and r.status == 200
            page.get_by_role("button", name="Add Users").wait_for(timeout=30_000)
            page.get_by_role("button", name="Shutdown Hub").wait_for(timeout=30_000)
            page.get_by_text("alice", exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("bob", exact=True).first.wait_for(timeout=30_000)
        with step(page, shot, "bob-6-logged-out-of-hub-and-idp"):
            page.goto(f"{demo_platform.hub_url}/hub/logout")
            # the hub ends the IdP session too (end-session with id_token_hint), then comes back
            page.wait_for_url(f"{demo_platform.hub_url}/hub/login**", timeout=30_000)
            page.locator("#login-main a").click()
            page.wait_for_selector("#kc-form-login", timeout=30_000)  # the password is asked again
    finally:
        context.close()


def test_no_secret_in_any_log(demo_platform: Any) -> None:
    """After the flows above, no S3 secret key, password or client secret is in any service log."""
    secrets = [u.secret_key for u in demo_platform.ceph.users.values()]
    secrets += [demo_platform.password, demo_platform.client_secret, demo_platform.vault.root_token]
    logs = demo_platform.log_files()
    assert any("hub" in name for name in logs)
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret is in the {name} log ({path})"
