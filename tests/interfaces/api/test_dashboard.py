"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real
``seawall serve``: log in, see an asset turn red when its RPO is breached and the alert
fire, start a drill and see it pass, a viewer denied a restore, the audit log for an
auditor only; nothing loaded from anywhere but the server. Screenshots go to the test's
directory and to /tmp/seawall-screens/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from seawall.control.access import Role
from seawall.plan.runner import backup_plan
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import PASSWORD, make_files
from tests.interfaces.api.served import add_users, keep_screenshot, serve, write_plan

CHROMIUM = Path("/usr/bin/chromium")
ASSETS = """\
- name: features
  kind: files
  paths: [features]
  rpo: 4s
  rto: 1m
  retention: {keep_last: 5}
- name: models
  kind: files
  paths: [models]
  rpo: 1h
  rto: 10m
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser: Browser, url: str, token: str, problems: list[str]) -> Page:
    """A fresh browser profile on the dashboard, logged in with ``token``. Noted in
    ``problems``: every request to anywhere but the server, every script error, and
    every console error but the API's refusals (a Content-Security-Policy violation
    is one)."""
    page = browser.new_context(viewport={"width": 1360, "height": 1000}).new_page()
    page.on("request", lambda r: None if r.url.startswith(url) else problems.append(r.url))
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    page.on(
        "console",
        lambda m: (
            problems.append(f"console: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.goto(url + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", token)
    page.click("#login-form button")
    return page


def shot(page: Page, directory: Path, name: str) -> Path:
    path = directory / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep_screenshot(path)
    return path


def test_dashboard_rpo_drill_roles_and_audit(tmp_path: Path, browser: Browser) -> None:
    make_files(tmp_path / "features", {"users.csv": b"id,age\n" + b"1,42\n" * 3000})
    make_files(tmp_path / "models", {"fraud.onnx": bytes(range(256)) * 400})
    plan = write_plan(tmp_path, ASSETS)
    backup_plan(plan, Repository.open(LocalStorage(tmp_path / "repo"), PASSWORD))
    users = add_users(tmp_path, Role.viewer, Role.auditor, Role.operator)
    problems: list[str] = []
    with serve(tmp_path) as server:
        page = open_page(browser, server.url, "sw_00000000_" + "x" * 43, problems)
        expect(page.locator("#login-error")).to_have_text("That token is not valid.")
        page.fill("#token", users["operator"].token)
        page.click("#login-form button")
        expect(page.locator("#who")).to_have_text("operator (operator)")
        assert page.evaluate("location.pathname") == "/dashboard/"

        # A fresh backup: within the RPO of 4 s; then, with no backup since, breached.
        features = page.locator('.asset[data-asset="features"]')
        features.locator("[data-action=backup]").click()
        expect(page.locator("#banner")).to_contain_text("backup of features started")
        backup_row = page.locator("#job-table tbody tr", has_text="backup")
        expect(backup_row).to_contain_text("ok", timeout=15_000)
        expect(features).to_have_class(re.compile(r"\bok\b"), timeout=15_000)
        expect(features.locator(".head")).to_contain_text("within RPO")
        shot(page, tmp_path, "1-within-rpo")
        expect(features).to_have_class(re.compile(r"\bbad\b"), timeout=15_000)
        expect(features.locator(".head")).to_contain_text("RPO breached")
        expect(page.locator("#overall")).to_have_text("attention needed")
        alert = page.locator('[data-alert="rpo_breach:features"]')
        expect(alert).to_contain_text("firing", timeout=15_000)
        expect(alert).to_contain_text("over its RPO of 4s")
        shot(page, tmp_path, "2-rpo-breached")

        # A drill of the models, watched to its end; its RTO is charted against the target.
        models = page.locator('.asset[data-asset="models"]')
        expect(models).to_have_class(re.compile(r"\bok\b"))
        models.locator("[data-action=drill]").click()
        expect(page.locator("#banner")).to_contain_text("drill of models started")
        drill_row = page.locator("#job-table tbody tr", has_text="drill")
        expect(drill_row).to_contain_text("ok", timeout=30_000)
        expect(models.locator("dd").nth(3)).to_contain_text("passed", timeout=15_000)
        chart = page.locator("#drill-charts svg[aria-label='models: RTO of each drill']")
        expect(chart.locator("circle.pt-ok")).to_have_count(1)
        expect(chart.locator("text.target-label")).to_have_text("target 10min")
        expect(page.locator("#snapshot-charts svg circle")).to_have_count(3)  # 2 + 1 backups
        shot(page, tmp_path, "3-drill-passed")

        # A viewer sees everything but may not restore.
        viewer = open_page(browser, server.url, users["viewer"].token, problems)
        expect(viewer.locator("#who")).to_have_text("viewer (viewer)")
        viewer.locator('.asset[data-asset="models"] [data-action=restore]').click()
        expect(viewer.locator("#banner")).to_contain_text("restore of models: denied")
        expect(viewer.locator("#banner")).to_have_class("bad")
        expect(viewer.locator("#audit-denied")).to_contain_text("may not read the audit log")
        expect(viewer.locator("#audit-table")).to_be_hidden()
        shot(viewer, tmp_path, "4-viewer-denied")

        # An auditor reads the audit log: the denied restore is in it, the chain intact.
        auditor = open_page(browser, server.url, users["auditor"].token, problems)
        expect(auditor.locator("#audit-verdict")).to_contain_text("chain intact", timeout=15_000)
        denied = auditor.locator("#audit-table tbody tr", has_text="denied")
        expect(denied).to_contain_text("restore")
        expect(denied).to_contain_text("viewer")
        compliance = auditor.locator('#compliance-table tr[data-asset="models"]')
        expect(compliance).to_contain_text("primary (no region)")
        shot(auditor, tmp_path, "5-auditor")
    assert problems == [], problems
