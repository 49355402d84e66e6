"""The status page in a real headless browser (Playwright driving Debian's chromium) against the
real stack: sign in, the provider list, the checklist with overdue work first, and "done".

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it). Without it
these tests fail, on purpose: a missing browser must not pass as a skipped test.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.identifiers import pseudonym
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("OMBOARD_CHROMIUM", "/usr/bin/chromium")
PROVIDER = "e2e-browser"
NOW = dt.datetime(2027, 2, 10, 9, 0, tzinfo=dt.UTC)  # some tasks are already late
NURSE = factories.hsa_id("E2E7")  # she joins with the start: her tasks name her by pseudonym only
SCREENSHOT = Path("/tmp/omboard-status-page.png")
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"chromium is missing at {CHROMIUM}: install it with `apt-get install -y chromium` "
                    "(Playwright cannot download browsers here); .ci/run does this", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory) -> Iterator[Stack]:
    clock = FileClock(tmp_path_factory.mktemp("clock") / "now")
    clock.set(NOW)
    stack = Stack(var_dir=tmp_path_factory.mktemp("var"), bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, sweep_interval=0.3, clock_file=clock.path)
    stack.add_key(f"{PROVIDER}-admin", "provider-admin", provider_id=PROVIDER)
    stack.start()
    try:
        stack.wait_ready(timeout=90)
        event = factories.provider_started(PROVIDER, start_date="2027-03-01", name="Webbläsar Omsorg AB",
                                           units=[factories.unit("e2e-browser-u1", staff_count=8)])
        assert httpx.post(f"{stack.api_url}/v1/events", json=event, headers=stack.auth()).status_code == 202
        nurse = factories.staff_joined(PROVIDER, unit_id="e2e-browser-u1", start_date="2027-03-01", person_id=NURSE)
        assert httpx.post(f"{stack.api_url}/v1/events", json=nurse, headers=stack.auth()).status_code == 202
        def every_planners_tasks() -> bool:  # in the ledger (the ready-to-start task comes last)
            response = httpx.get(f"{stack.status_url}/v1/providers/{PROVIDER}/tasks", headers=stack.auth("operator"))
            tasks = response.json()["tasks"] if response.status_code == 200 else []
            return (any(t["obligation"] == "ST1" for t in tasks) and any(t["system"] == "siths" for t in tasks)
                    and any(t["person"] == pseudonym(NURSE) for t in tasks))

        eventually(every_planners_tasks, "the provider's tasks to reach the status API", timeout=30)
        yield stack
    finally:
        stack.stop()


def test_sign_in_see_the_list_open_the_checklist_and_mark_a_task_done(browser, stack):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="sv-SE")  # a laptop screen
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        # Not signed in: the page asks for a key, then goes where it was asked to.
        page.goto(f"{stack.status_url}/providers")
        expect(page).to_have_url(f"{stack.status_url}/login?next=%2Fproviders")
        page.fill("input[name=key]", "not-a-key")
        page.click("button[type=submit]")
        expect(page.get_by_role("alert")).to_contain_text("unknown key")
        page.fill("input[name=key]", stack.keys[f"{PROVIDER}-admin"])
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{stack.status_url}/providers")
        cookie = next(c for c in context.cookies() if c["name"] == "omboard_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # The list: only this administrator's provider, with its overdue count.
        links = page.locator("a[href^='/providers/']")
        expect(links).to_have_count(1)
        expect(links).to_contain_text("Webbläsar Omsorg AB")
        links.first.click()
        expect(page).to_have_url(f"{stack.status_url}/providers/{PROVIDER}")
        expect(page.locator("h1")).to_have_text("Webbläsar Omsorg AB")

        # Overdue work first: the first row of the first system is overdue, and no overdue row
        # comes after one that is not, within each system.
        rows = page.locator("tr[data-status]")
        expect(rows.first).to_have_attribute("data-overdue", "yes")
        for table in page.locator("table").all():
            flags = table.locator("tr[data-status]").evaluate_all("rows => rows.map(r => r.dataset.overdue)")
            assert flags == sorted(flags, reverse=True), flags  # "yes" before "no"
        assert pseudonym(NURSE) in page.content(), "the page has a person's tasks on it"
        assert "SE2321000032" not in page.content()  # and never an HSA-id

        # Mark the first open overdue task done.
        target = page.locator("tr[data-status=open][data-overdue=yes]").first
        task_row_id = target.get_attribute("id")
        target.get_by_role("button", name="Klar / done").click()
        expect(page.get_by_role("status")).to_contain_text("Klart")
        done_row = page.locator(f"tr#{task_row_id}")
        expect(done_row).to_have_attribute("data-status", "done")
        expect(done_row.locator(".badge")).to_have_text("done")
        expect(done_row.get_by_role("button")).to_have_count(0)

        # A filter as a small GET form.
        page.select_option("select[name=system]", "siebel")
        page.get_by_role("button", name="Filtrera / filter").click()
        expect(page).to_have_url(f"{stack.status_url}/providers/{PROVIDER}?system=siebel&responsible=&status=")
        expect(page.locator("h2")).to_have_count(1)
        expect(page.locator("h2")).to_have_text("Siebel")
        page.goto(f"{stack.status_url}/providers/{PROVIDER}")
        page.screenshot(path=str(SCREENSHOT), full_page=False)
    finally:
        context.close()

    response = httpx.get(f"{stack.status_url}/v1/providers/{PROVIDER}/tasks", headers=stack.auth("operator"))
    assert any(t["id"] == task_row_id.removeprefix("task-") and t["status"] == "done" for t in response.json()["tasks"])


def test_a_mail_link_lands_on_the_checklist_after_signing_in(browser, stack):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{stack.status_url}/providers/{PROVIDER}")  # what the mails link to
        page.fill("input[name=key]", stack.keys["operator"])
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{stack.status_url}/providers/{PROVIDER}")
        expect(page.get_by_role("button", name="Klar / done").first).to_be_visible()
        page.get_by_role("button", name="Logga ut").click()
        expect(page).to_have_url(f"{stack.status_url}/login")
        assert not [c for c in context.cookies() if c["name"] == "omboard_key"]
    finally:
        context.close()


def test_a_providers_people_and_their_access(browser, stack):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{stack.status_url}/providers/{PROVIDER}")
        page.fill("input[name=key]", stack.keys[f"{PROVIDER}-admin"])
        page.click("button[type=submit]")
        page.get_by_role("link", name="Personal och behörigheter / people and access").click()
        expect(page).to_have_url(f"{stack.status_url}/providers/{PROVIDER}/access")
        # Her own administrator sees her by HSA-id, with what she was ordered in each system.
        heading = page.locator("h2", has_text=NURSE)
        expect(heading).to_have_count(1)
        hers = heading.locator("xpath=following-sibling::table[1]").locator("tr[data-state]")
        expect(hers).to_have_count(4)
        assert set(hers.evaluate_all("rows => rows.map(r => r.dataset.system)")) == {"siebel", "siths", "prator", "phoniro"}
        expect(page.locator("#held")).not_to_have_text("0")
        with page.expect_download() as download:
            page.get_by_role("link", name="CSV").click()
        assert download.value.suggested_filename.startswith(f"omboard-access-{PROVIDER}")
    finally:
        context.close()


def test_a_date_at_risk_shows_above_the_checklist(browser, stack):
    from playwright.sync_api import expect

    late_provider = "e2e-browser-late"
    event = factories.provider_started(late_provider, start_date="2027-02-17", name="Sen Start Omsorg AB",
                                       time="2027-02-10T09:00:00+01:00")  # a week ahead: the catalog needs ~30 business days
    assert httpx.post(f"{stack.api_url}/v1/events", json=event, headers=stack.auth()).status_code == 202

    def shown() -> list[dict] | None:  # the verdict and the tasks, both in the read model
        base = f"{stack.status_url}/v1/providers/{late_provider}"
        verdicts = httpx.get(f"{base}/verdicts", headers=stack.auth("operator"))
        tasks = httpx.get(f"{base}/tasks", headers=stack.auth("operator"))
        found = verdicts.json()["verdicts"] if verdicts.status_code == 200 else []
        return found if found and tasks.status_code == 200 else None

    [verdict] = eventually(shown, "the late start's date at risk and its tasks in the status API", timeout=30)  # type: ignore[misc]
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{stack.status_url}/providers/{late_provider}")
        page.fill("input[name=key]", stack.keys["operator"])
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Sen Start Omsorg AB")
        box = page.locator("#verdicts")
        expect(box).to_be_visible()
        expect(box).to_contain_text("Datum i fara / date at risk: 2027-02-17")
        expect(box).to_contain_text(f"earliest feasible: {verdict['earliest_feasible']}")
        expect(box.locator("ol.chain li")).to_have_count(len(verdict["chain"]))
        expect(box.locator("ol.chain li").first).to_contain_text("Siebel")
        # Above the task list: before the first table, and drawn above it.
        assert box.evaluate("box => !!(box.compareDocumentPosition(document.querySelector('table')) "
                            "& Node.DOCUMENT_POSITION_FOLLOWING)")
        assert box.bounding_box()["y"] < page.locator("table").first.bounding_box()["y"]  # type: ignore[index]
        # A provider whose dates can all be met has no box.
        page.goto(f"{stack.status_url}/providers/{PROVIDER}")
        expect(page.locator("h1")).to_have_text("Webbläsar Omsorg AB")
        expect(page.locator("#verdicts")).to_have_count(0)
    finally:
        context.close()
