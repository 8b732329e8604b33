"""The fraud team's page in a real browser (Debian's chromium, headless, driven by Selenium): sign in with
a token, open a case, a self-approval refused with a clear message, an approval by another person,
the policy history, a backtest with its transitions and daily chart, and the rankings.
Screenshots go to the test's tmp dir when a step fails."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.test_operations import NAMED, TOKENS, current
from tests.integration.test_review_cases import sample_with_tokens

selenium = pytest.importorskip("selenium", reason="pip install -e '.[test]' installs selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"
# Longest the page may take for one step (a backtest replays the sample day twice: well under this).
STEP_WAIT_S = 90
# Requests sent after the shadow started: dated the sample's day (2026-11-21), after its events.
LATE_AT = "2026-11-21T23:00:00Z"


@pytest.fixture
def browser(tmp_path):
    if not shutil.which("chromium") or not shutil.which(CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are needed (make install puts them there with apt-get)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2400", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def worker(tmp_path):
    yield from sample_with_tokens(tmp_path / "deployment")


def test_the_fraud_team_reviews_backtests_and_ranks_in_the_browser(browser, worker, tmp_path):
    page = Page(browser, tmp_path)
    case = next(d for d in current(worker.decisions()).values()
                if d["outcome"] == "ESCALATED" and d["requested_by"] in NAMED)
    try:
        browser.get(f"{worker.settings.worker_url}/fraud")
        assert "fraud team" in browser.title

        # Without a token nothing is shown: the page says why.
        page.click("queue-refresh")
        page.wait_text("queue-message", "Authorization: Bearer TOKEN required")

        # The associate who asked opens their own case and tries to approve it: refused, clearly.
        page.sign_in(NAMED[case["requested_by"]])
        page.type("f-associate", case["requested_by"])
        page.click("queue-refresh")
        page.wait_text("queue-message", "waiting")
        browser.find_element(By.CSS_SELECTOR, f"button.open-case[data-request='{case['request_id']}']").click()
        page.wait_text("case-title", case["request_id"])
        assert "policy version:" in page.text("case-inputs")
        assert "customer now:" in page.text("case-now")
        assert case["reason_codes"][0] in page.text("case-reasons")
        page.type("review-note", "a loyal customer")
        page.click("approve-button")
        page.wait_text("review-message", "SELF_APPROVAL")
        assert "may not approve it (four eyes)" in page.text("review-message")

        # Another person approves it with a note.
        page.sign_in(NAMED["assoc-lead"])
        page.click("queue-refresh")
        page.wait_text("queue-message", "waiting")
        browser.find_element(By.CSS_SELECTOR, f"button.open-case[data-request='{case['request_id']}']").click()
        page.wait_text("case-title", case["request_id"])
        page.click("approve-button")
        page.wait_text("review-message", "a note saying why is required")
        page.type("review-note", "a loyal customer")
        page.click("approve-button")
        page.wait_text("review-message", f"approved {case['request_id']} as assoc-lead")
        worker.wait_for("the approval", lambda: current(worker.decisions())[case["request_id"]]["outcome"] == "GRANTED")

        # The fraud team: policy, backtest, rankings.
        page.sign_in(TOKENS["fraud"])
        page.click("policy-refresh")
        page.wait_text("policy-current", "the configured default")
        page.click("backtest-run")
        page.wait_text("backtest-message", "done in")
        summary = page.text("backtest-summary")
        assert "reproduced 100.00% of the recorded decisions" in summary and "DEFECT" not in summary
        assert browser.find_elements(By.CSS_SELECTOR, "#backtest-svg polyline.series-before")
        assert browser.find_elements(By.CSS_SELECTOR, "#backtest-svg polyline.series-after")
        assert page.text("backtest-granted").count("USD") >= 1
        page.click("shadow-refresh")
        page.wait_text("shadow-message", "no shadow policy was ever started")
        stricter = tmp_path / "stricter.json"
        stricter.write_text('{"kind_cents_max_per_customer_30d": {"CREDIT": 500}}')
        worker.cli("policy", "shadow", str(stricter), "--author", "fraud-ana", "--reason", "credit wave")
        later = tmp_path / "later.jsonl"
        later.write_text("".join(
            '{"type": "RemedyRequested", "event_id": "e-late-%d", "request_id": "late-%d", "customer_id": "late-c%d", '
            '"order_id": null, "incident_id": null, "kind": "CREDIT", "amount_cents": 1000, "currency": "USD", '
            '"requested_by": "customer", "requested_at": "%s", "reason": "late"}\n' % (n, n, n, LATE_AT)
            for n in range(3)))
        worker.cli("publish", str(later))
        worker.cli("wait", "--file", str(later), "--timeout", "120")
        worker.wait_for("the shadow's decisions", lambda: len(worker.read_topic(worker.names.shadow_decisions)) >= 3)
        page.click("shadow-refresh")
        page.wait_text("shadow-summary", "3 shadow decisions")
        assert "GRANTED->DENIED" in page.text("shadow-transitions")
        page.click("rank-refresh")
        WebDriverWait(browser, STEP_WAIT_S).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#rank-households tbody tr"))
        # A reviewer may not run backtests (fraud only): the page shows the API's answer.
        page.sign_in(NAMED["assoc-lead"])
        page.click("backtest-run")
        page.wait_text("backtest-message", "the reviewer role may not call /v1/backtests")
    except Exception:
        page.screenshot("failure")
        raise


class Page:
    """Small steps on the fraud page, by element id."""

    def __init__(self, driver, tmp_path):
        self.driver, self.tmp_path = driver, tmp_path

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def type(self, element_id: str, text: str) -> None:
        field = self.driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(text)

    def text(self, element_id: str) -> str:
        return self.driver.find_element(By.ID, element_id).text

    def wait_text(self, element_id: str, wanted: str) -> None:
        WebDriverWait(self.driver, STEP_WAIT_S).until(lambda d: wanted in d.find_element(By.ID, element_id).text,
                                                      f"{element_id} never showed {wanted!r}")

    def sign_in(self, token: str) -> None:
        self.type("token", token)
        self.click("signin-button")
        self.wait_text("signin-status", "token set")

    def screenshot(self, name: str) -> None:
        path = self.tmp_path / f"{name}.png"
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}")
