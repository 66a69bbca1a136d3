#!/usr/bin/python3
"""The inspector's page in a real browser (Debian's chromium + chromium-driver, python3-selenium).

Starts tdhook-receiver with --inspect (port 0 for both listeners, a secret file, a file sink,
--events so that one event is filtered out), opens the page, sends notifications with
`tdhook send` (valid, a duplicate, wrong-secret, bad-signature, stale, a filtered-out event) and
checks that each appears without a reload, with its outcome and reason; opens details (masked
secret, decoded claims, the failing check), replays a stored event and sees the new delivery in
the file sink, copies a curl command; then checks that the token-protected mode refuses a
browser without the token and lets it in through /login. Screenshots (light, dark, narrow) go to
--artifacts; with TDHOOK_UPDATE_SCREENSHOTS=1 also to --docs as inspector-{light,dark,narrow}.png.

Run by ctest (browser.inspector); exits non-zero with a message on any failure.
"""

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

SECRET = "5f1b0f3e-8c2a-4d6b-9e7f-1a2b3c4d5e6f"
INSPECT_TOKEN = "browser-test-token-3b9d2f7a1c8e4d6b"
WAIT = 15  # seconds any condition may take


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Receiver:
    """A tdhook-receiver process; its ports come from its JSON log lines on stderr."""

    def __init__(self, binary, workdir, extra):
        self.lines = queue.Queue()
        self.log = []
        args = [binary, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(workdir, "data"),
                "--secret-file", os.path.join(workdir, "secret"), "--inspect", "127.0.0.1:0",
                "--retry-base", "50ms"] + extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = self._port_of("listening")
        self.inspector_port = self._port_of("inspector listening")
        self.url = "http://127.0.0.1:%d/" % self.port
        self.inspector = "http://127.0.0.1:%d/" % self.inspector_port

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _port_of(self, msg):
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("the receiver did not log %r:\n%s" % (msg, "".join(self.log)))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise Failure("the receiver exited:\n%s" % "".join(self.log))
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == msg:
                return int(entry["port"])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=WAIT)


def send(tool, receiver, workdir, *extra):
    """tdhook send; returns its exit code (1 for a refused notification)."""
    args = [tool, "send", "--to", receiver.url, "--secret-file", os.path.join(workdir, "secret")]
    args += list(extra)
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=WAIT)
    return done.returncode, done.stdout


def http_status(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code


def make_driver():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    if os.path.exists("/usr/bin/chromium"):
        options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver, condition, message, timeout=WAIT):
    try:
        # A page that is replaced (a form's answer, a re-rendered row) while a condition reads it.
        return WebDriverWait(driver, timeout, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(condition)
    except Exception as e:  # TimeoutException, with the message that says what was awaited
        raise Failure("timed out: %s (%s)" % (message, type(e).__name__)) from None


def rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#rows tr.row")


def top_row(driver):
    found = rows(driver)
    return found[0] if found else None


def row_count_at_least(n):
    return lambda d: len(rows(d)) >= n


def send_and_see(driver, tool, rx, workdir, args, outcome, reason, expected_exit):
    """Sends one notification and waits for its row at the top of the list, without reload."""
    before = len(rows(driver))
    code, out = send(tool, rx, workdir, *args)
    check(code == expected_exit, "tdhook send %s exited %d, not %d:\n%s" %
          (" ".join(args), code, expected_exit, out))
    wait(driver, row_count_at_least(before + 1), "a new row for %s" % " ".join(args))

    # Rows are re-rendered as deliveries progress: read the top one inside a wait.
    def top_says(d):
        row = top_row(d)
        if row is None:
            return False
        badge = row.find_element(By.CSS_SELECTOR, ".badge")
        if (row.get_attribute("data-outcome"), row.get_attribute("data-reason"),
                badge.get_attribute("data-outcome")) != (outcome, reason, outcome):
            return False
        if outcome == "refused" and not (reason in badge.text and
                                         re.search(r"\b40\d\b", badge.text)):
            return False
        return row.get_attribute("data-request-id")
    return wait(driver, top_says, "the top row to be %s/%s (its badge with reason and status)" %
                (outcome, reason))


def open_detail(driver, request_id):
    def opened(d):
        detail = d.find_element(By.ID, "detail")
        if detail.get_attribute("data-request-id") == request_id and detail.is_displayed():
            return True
        d.find_element(By.CSS_SELECTOR, '#rows tr[data-request-id="%s"]' % request_id).click()
        return False
    wait(driver, opened, "the detail of #%s" % request_id)


# Read with one script: the detail is re-rendered when its deliveries progress.
def failing_check(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(\"#checks li.check[data-state='failed']\"))"
        ".map((e) => e.dataset.check)")


def text_of(driver, selector):
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
        selector)


def emulate_dark(driver, dark):
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})


def background(driver):
    return driver.execute_script("return getComputedStyle(document.body).backgroundColor")


def the_page(driver, args, workdir, artifacts):
    """Every kind of request, live; details; replay; copies; screenshots."""
    with open(os.path.join(workdir, "secret"), "w") as f:
        f.write(SECRET + "\n")
    sink = os.path.join(workdir, "events.ndjson")
    rx = Receiver(args.receiver, workdir, ["--sink", "file:" + sink,
                                            "--events", "lead.create,request.*"])
    try:
        driver.get(rx.inspector)
        wait(driver, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live",
             "the live stream to connect")
        # Set on this page load only: a reload would lose it.
        driver.execute_script("window.__tdhookNoReload = 'still the same page';")

        ts = str(int(time.time() * 1000))
        stored = send_and_see(driver, args.tool, rx, workdir,
                              ["--sample", "lead.create", "--timestamp", ts], "stored", "stored", 0)
        send_and_see(driver, args.tool, rx, workdir,
                     ["--sample", "lead.create", "--timestamp", ts], "duplicate", "duplicate", 0)
        mismatch = send_and_see(driver, args.tool, rx, workdir,
                                ["--sample", "lead.create", "--tamper", "wrong-secret"],
                                "refused", "secret_mismatch", 1)
        bad_signature = send_and_see(driver, args.tool, rx, workdir,
                                     ["--sample", "request.create", "--tamper", "bad-signature"],
                                     "refused", "token_bad_signature", 1)
        stale = send_and_see(driver, args.tool, rx, workdir,
                             ["--sample", "lead.create", "--tamper", "stale"],
                             "refused", "stale", 1)
        send_and_see(driver, args.tool, rx, workdir, ["--sample", "faq.create"],
                     "filtered", "filtered", 0)
        check(len(rows(driver)) == 6, "six rows, one per request")
        wait(driver, lambda d: d.execute_script("return window.__tdhookNoReload") ==
             "still the same page", "the page not to reload")
        # The stored event reaches the file sink, and its row says so.
        wait(driver, lambda d: d.find_elements(
            By.CSS_SELECTOR, '#rows tr[data-request-id="%s"] .sink[data-state="delivered"]' % stored),
            "the stored event's delivery to show as delivered")

        # Filters: by outcome (the server answers), then back to everything.
        driver.find_element(By.CSS_SELECTOR, "#filter-outcome option[value='refused']").click()
        wait(driver, lambda d: len(rows(d)) == 3 and all(
            r.get_attribute("data-outcome") == "refused" for r in rows(d)),
            "the outcome filter to list the three refusals")
        driver.find_element(By.CSS_SELECTOR, "#filter-outcome option[value='']").click()
        wait(driver, lambda d: len(rows(d)) == 6, "every request listed again")

        # The wrong secret: masked, the secret check failing with its explanation.
        open_detail(driver, mismatch)
        header = text_of(driver, '#headers tr[data-header="x-hook-secret"] td')
        check(header == "(hidden, 36 characters)", "the secret is masked: %r" % header)
        check(failing_check(driver) == ["secret"], "the failing check is the secret's: %r" %
              failing_check(driver))
        explanation = text_of(driver, "#explanation")
        check("another secret" in explanation, "the explanation: %r" % explanation)
        claims = text_of(driver, "#token-claims")
        check('"iss": "https://tiledesk.com"' in claims and '"event": "lead.create"' in claims,
              "the decoded claims: %r" % claims[:300])
        check(text_of(driver, "#token-signature") == "not checked", "the signature is not checked")
        check(driver.find_element(By.ID, "replay").get_attribute("disabled") is not None,
              "a refusal cannot be replayed")

        # The bad signature: the signature check fails, the token is decoded, never shown.
        open_detail(driver, bad_signature)
        check(failing_check(driver) == ["signature"], "the failing check is the signature's")
        check("another secret" in text_of(driver, "#explanation"), "the bad signature's explanation")
        open_detail(driver, stale)
        check(failing_check(driver) == ["freshness"], "the failing check is freshness")
        check(text_of(driver, "#token-signature") == "checked",
              "a stale token's signature was checked")

        # The stored event: every check passed, its record, then a replay to the file sink.
        open_detail(driver, stored)
        check(failing_check(driver) == [], "a stored event fails no check")
        record = text_of(driver, "#record")
        check('"event": "lead.create"' in record, "the event record: %r" % record[:200])
        light_background = background(driver)
        driver.save_screenshot(os.path.join(artifacts, "inspector-light.png"))
        driver.find_element(By.ID, "replay").click()
        wait(driver, lambda d: d.find_element(By.ID, "action-result").get_attribute(
            "data-delivery-id"), "the replay's answer")
        replayed = driver.find_element(By.ID, "action-result").get_attribute("data-delivery-id")
        wait(driver, lambda d: os.path.exists(sink) and replayed in open(sink).read(),
             "the replay %s to reach the file sink" % replayed)
        wait(driver, lambda d: d.find_elements(
            By.CSS_SELECTOR, '#rows tr[data-delivery-id="%s"]' % replayed),
            "the replay's row in the list")

        # Copy as curl / as tdhook send: the secret as a placeholder, never its value.
        driver.find_element(By.ID, "copy-curl").click()
        area = driver.find_element(By.ID, "copy-text")
        wait(driver, lambda d: area.is_displayed() and "curl" in area.get_attribute("value"),
             "the curl command")
        curl = area.get_attribute("value")
        check("$(head -n1 " in curl and "x-hook-secret" in curl, "curl reads the secret file")
        driver.find_element(By.ID, "copy-send").click()
        wait(driver, lambda d: "tdhook send" in area.get_attribute("value"),
             "the tdhook send command")
        check("--secret-file" in area.get_attribute("value"), "tdhook send takes --secret-file")

        # Nothing the page holds is the secret.
        check(SECRET not in driver.page_source, "the secret appears in the page")

        # Dark, then narrow (light) screenshots.
        open_detail(driver, mismatch)
        emulate_dark(driver, True)
        wait(driver, lambda d: background(d) != light_background, "the dark colours")
        driver.save_screenshot(os.path.join(artifacts, "inspector-dark.png"))
        emulate_dark(driver, False)
        wait(driver, lambda d: background(d) == light_background, "the light colours again")
        driver.find_element(By.ID, "close-detail").click()
        driver.set_window_size(400, 900)
        wait(driver, lambda d: d.execute_script("return window.innerWidth") <= 400,
             "a 400 px window")
        wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#rows tr.row").size["width"] <= 400,
             "the list to fit 400 px")
        scroll_width = driver.execute_script("return document.documentElement.scrollWidth")
        check(scroll_width <= 400, "no horizontal scrolling at 400 px (%d)" % scroll_width)
        driver.save_screenshot(os.path.join(artifacts, "inspector-narrow.png"))
        driver.set_window_size(1280, 900)
    except BaseException:
        sys.stderr.write("receiver log (last lines):\n" + "".join(rx.log[-40:]))
        raise
    finally:
        rx.stop()


def token_mode(driver, args, workdir):
    """--inspect-token-file: refused without the token, let in through /login."""
    token_file = os.path.join(workdir, "inspect-token")
    with open(token_file, "w") as f:
        f.write(INSPECT_TOKEN + "\n")
    protected_dir = os.path.join(workdir, "protected")
    os.makedirs(protected_dir)
    shutil.copy(os.path.join(workdir, "secret"), os.path.join(protected_dir, "secret"))
    rx = Receiver(args.receiver, protected_dir, ["--inspect-token-file", token_file])
    try:
        check(http_status(rx.inspector + "api/requests") == 401, "the API without the token")
        check(http_status(rx.inspector + "api/requests",
                          {"Authorization": "Bearer " + INSPECT_TOKEN}) == 200,
              "the API with the token")
        driver.delete_all_cookies()
        driver.get(rx.inspector)
        wait(driver, EC.url_contains("/login"), "the page to send a browser to /login")
        check(not driver.find_elements(By.ID, "rows"), "no list without the token")
        driver.find_element(By.ID, "token").send_keys("not the token")
        driver.find_element(By.ID, "login-submit").click()
        wait(driver, lambda d: "not the inspector's token" in
             d.find_element(By.ID, "login-error").text, "a wrong token to be refused")
        driver.find_element(By.ID, "token").send_keys(INSPECT_TOKEN)
        driver.find_element(By.ID, "login-submit").click()
        wait(driver, lambda d: d.find_elements(By.ID, "live") and
             d.find_element(By.ID, "live").get_attribute("data-state") == "live",
             "the page after logging in")
        code, out = send(args.tool, rx, protected_dir, "--sample", "lead.create")
        check(code == 0, "tdhook send to the protected receiver: " + out)
        wait(driver, row_count_at_least(1), "the request in the protected page")
        check(INSPECT_TOKEN not in "".join(rx.log), "the inspector's token in the log")
    except BaseException:
        sys.stderr.write("receiver log (last lines):\n" + "".join(rx.log[-40:]))
        raise
    finally:
        rx.stop()


def run(args, workdir, artifacts):
    driver = make_driver()
    try:
        the_page(driver, args, workdir, artifacts)
        token_mode(driver, args, workdir)
    except BaseException:
        try:
            driver.save_screenshot(os.path.join(artifacts, "failure.png"))
            with open(os.path.join(artifacts, "failure.html"), "w") as f:
                f.write(driver.page_source)
        except Exception:
            pass
        raise
    finally:
        driver.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--docs", help="where TDHOOK_UPDATE_SCREENSHOTS=1 copies the screenshots")
    args = parser.parse_args()
    for path in ("/usr/bin/chromedriver", args.receiver, args.tool):
        if not os.path.exists(path):
            print("browser.inspector: %s is missing (scripts/install-deps installs chromium, "
                  "chromium-driver and python3-selenium)" % path, file=sys.stderr)
            return 1
    os.makedirs(args.artifacts, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="tdhook-browser-")
    try:
        run(args, workdir, args.artifacts)
    except Failure as e:
        print("browser.inspector FAILED: %s" % e, file=sys.stderr)
        print("artifacts: %s" % args.artifacts, file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print("browser.inspector FAILED (artifacts: %s)" % args.artifacts, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if os.environ.get("TDHOOK_UPDATE_SCREENSHOTS") == "1" and args.docs:
        os.makedirs(args.docs, exist_ok=True)
        for name in ("inspector-light.png", "inspector-dark.png", "inspector-narrow.png"):
            shutil.copy(os.path.join(args.artifacts, name), os.path.join(args.docs, name))
        print("screenshots copied to %s" % args.docs)
    print("browser.inspector: passed (screenshots in %s)" % args.artifacts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
