#!/usr/bin/python3
"""dashboard.py — GET /dashboard in a real browser: Debian's headless
Chromium, driven through chromedriver by Selenium (Debian's chromium,
chromium-driver and python3-selenium), against a tpool-server that run.sh
started on 127.0.0.1.

Checks that the five pools appear (and no Schedules panel, with no
schedule configured), that the numbers move when tasks are
posted, that the log button asks for the admin token and works, that the
page says so when the server stops answering and recovers when it is back,
and that the browser console stays clean (no error logged, no uncaught
exception). Saves a screenshot of the whole page. Exits 0, or 1 with the
reason.

Usage: dashboard.py URL TOKEN SCREENSHOT CONTROL
CONTROL is a file of commands for run.sh: the script writes "stop" or
"start" to it and waits for run.sh to write "stopped" or "started".
"""
import base64
import json
import math
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException,
                                        UnexpectedAlertPresentException,
                                        WebDriverException)
from selenium.webdriver.chrome.service import Service

POOLS = ["io", "cpu", "inference", "embedding", "db"]
WAIT_S = 30
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Failed fetches while the server is down are expected; anything else the
# page logs as an error is a defect.
EXPECTED = re.compile(r"Failed to load resource|ERR_CONNECTION_REFUSED")
CANARY = "dashboard-test-canary"


class Failure(Exception):
    pass


class Test:
    def __init__(self, url, token, screenshot, control):
        self.url, self.token = url, token
        self.screenshot, self.control = screenshot, control
        self.problems = []
        self.canaries = set()
        self.driver = None
        self.driver_trouble = False

    # ---- the browser ----------------------------------------------------

    def start_browser(self, profile, driver_log):
        # Selenium talks to chromedriver at "localhost".
        try:
            socket.getaddrinfo("localhost", None)
        except OSError as e:
            raise Failure(f'"localhost" does not resolve ({e}): Selenium '
                          "reaches chromedriver there (no /etc/hosts?)")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        # As root in a sandbox: no Chromium sandbox, no GPU, no /dev/shm
        # (often small), and none of Chromium's own connections to the
        # outside (refused here), with a fresh profile.
        for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-quic", "--no-first-run",
                    "--no-default-browser-check", "--window-size=1400,900",
                    "--user-data-dir=" + profile):
            opts.add_argument(arg)
        # Everything the page logs, read with get_log("browser").
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # Dialogs stay open until this script answers them.
        opts.set_capability("unhandledPromptBehavior", "ignore")
        service = Service(executable_path=CHROMEDRIVER, log_path=driver_log)
        self.driver = webdriver.Chrome(service=service, options=opts)
        # The page's viewport, exactly: 1400 x 900 CSS pixels.
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1400, "height": 900, "deviceScaleFactor": 1,
            "mobile": False})

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def read_console(self):
        """Moves what the browser logged since the last call into
        self.problems: every error (console.error, uncaught exceptions,
        CSP violations) but failed requests and the canaries."""
        for e in self.driver.get_log("browser"):
            msg = e.get("message", "")
            if CANARY in msg:
                self.canaries.add(e.get("source", "?"))
                continue
            if e.get("level") == "SEVERE" and not EXPECTED.search(msg):
                self.problems.append(f"console ({e.get('source')}): {msg}")

    def check_console_is_read(self):
        """The console check would pass vacuously if nothing reached
        get_log(): a console.error and an uncaught exception of our own
        must both show up there."""
        self.js(f"console.error('{CANARY} console.error');"
                f"setTimeout(() => {{ throw new Error('{CANARY} throw'); }});")
        until = time.monotonic() + WAIT_S
        while time.monotonic() < until:
            self.read_console()
            if {"console-api", "javascript"} <= self.canaries:
                return
            time.sleep(0.1)
        raise Failure("the browser's log does not show console.error and "
                      "uncaught exceptions (sources seen: "
                      f"{sorted(self.canaries)})")

    def wait(self, what, predicate, *args):
        """Polls the JavaScript expression predicate (arguments[0]... are
        args) until it is true."""
        until = time.monotonic() + WAIT_S
        while time.monotonic() < until:
            if self.js("return !!(" + predicate + ");", *args):
                return
            time.sleep(0.05)
        raise Failure(f"timed out after {WAIT_S} s waiting for {what}")

    def wait_visible(self, selector):
        self.wait(selector + " visible",
                  "(() => { const e = document.querySelector(arguments[0]);"
                  " if (!e) return false;"
                  " const r = e.getBoundingClientRect();"
                  " return r.width > 0 && r.height > 0 &&"
                  " getComputedStyle(e).visibility !== 'hidden'; })()",
                  selector)

    def text_or_none(self, selector):
        """The element's text, or None when the page gave none: no such
        element, or a dialog opened just as the script ran (chromedriver,
        ignoring prompts, then returns nothing)."""
        return self.js("const e = document.querySelector(arguments[0]);"
                       "return e ? e.textContent : null;", selector)

    def text(self, selector):
        t = self.text_or_none(selector)
        if t is None:
            raise Failure("no element " + selector)
        return t

    def save_screenshot(self):
        """The whole page, as Playwright's fullPage did."""
        m = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = m.get("cssContentSize") or m["contentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0,
                     "width": max(1400, math.ceil(size["width"])),
                     "height": max(900, math.ceil(size["height"])),
                     "scale": 1}})
        with open(self.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    # ---- the server -----------------------------------------------------

    def ask(self, command, answer):
        with open(self.control, "w") as f:
            f.write(command)
        until = time.monotonic() + WAIT_S
        while time.monotonic() < until:
            with open(self.control) as f:
                if f.read().strip() == answer:
                    return
            time.sleep(0.05)
        raise Failure(f'run.sh did not answer "{command}"')

    def post_tasks(self, n):
        """n concurrent POST /tasks/cpu; returns the threads and a list
        that gets each reply's status, or the error of a request that got
        no reply."""
        replies = []

        def post():
            req = urllib.request.Request(
                self.url + "tasks/cpu", method="POST",
                headers={"Authorization": "Bearer " + self.token,
                         "Content-Type": "application/json"},
                data=json.dumps({"name": "browser_load", "work": "sleep",
                                 "ms": 1500}).encode())
            try:
                with urllib.request.urlopen(req, timeout=WAIT_S) as r:
                    r.read()
                    replies.append(r.status)
            except urllib.error.HTTPError as e:
                replies.append(e.code)  # a reply all the same
            except OSError as e:
                replies.append(e)
        threads = [threading.Thread(target=post) for _ in range(n)]
        for t in threads:
            t.start()
        return threads, replies

    # ---- the test -------------------------------------------------------

    def run(self):
        d = self.driver
        d.get(self.url + "dashboard")
        self.check_console_is_read()
        for p in POOLS:
            self.wait_visible("#pool-" + p)
        cards = self.js("return [...document.querySelectorAll("
                        "'section.pool')].map((e) => e.dataset.pool);")
        if cards != POOLS:
            raise Failure("pools shown: " + ",".join(cards))
        # No schedule in this config: the Schedules panel stays hidden
        # once /health/schedules has answered, and no pool shows a last
        # error before any task failed.
        self.wait("GET /health/schedules drawn (an empty table)",
                  "performance.getEntriesByType('resource').some((e) =>"
                  " e.name.endsWith('/health/schedules'))")
        time.sleep(1.5)
        if self.js("return !document.getElementById('schedules').hidden ||"
                   " !!document.querySelector('#schedule-rows tr');"):
            raise Failure("the Schedules panel shows with no schedule")
        if self.js("return !!document.querySelector('.lasterr');"):
            raise Failure("a pool shows a last error before any failed")

        # Load: the cpu pool's busy workers and totals move.
        before = self.text("#pool-cpu table")
        threads, replies = self.post_tasks(12)
        self.wait("a busy worker in #pool-cpu",
                  r"/[1-9]\d* busy/.test(document.querySelector("
                  "'#pool-cpu').textContent)")
        self.wait("browser_load running in #pool-cpu .tasks",
                  "document.querySelector('#pool-cpu .tasks')"
                  ".textContent.includes('browser_load')")
        self.save_screenshot()  # busy
        for t in threads:
            t.join()
        errors = [r for r in replies if not isinstance(r, int)]
        if errors:
            raise Failure("POST /tasks/cpu: " + "; ".join(map(str, errors)))
        self.wait("12 ok in #pool-cpu's totals (replies: "
                  + ",".join(map(str, replies)) + ")",
                  "document.querySelector('#pool-cpu table').textContent"
                  " !== arguments[0] && /12 ok/.test(document.querySelector("
                  "'#pool-cpu table').textContent)", before)
        self.read_console()

        # The log button: the server wants the token; the page asks for it.
        asked = 0
        d.find_element("css selector", "#log").click()
        until = time.monotonic() + WAIT_S
        while True:
            try:
                alert = d.switch_to.alert
                asked += 1
                alert.send_keys(self.token)
                alert.accept()
                continue
            except NoAlertPresentException:
                pass
            try:
                # None: the token's prompt opened meanwhile; it is answered
                # at the top of the loop.
                if self.text_or_none("#state") == "status written to the log":
                    break
            except UnexpectedAlertPresentException:
                continue  # answered at the top of the loop
            if time.monotonic() > until:
                raise Failure(f"timed out after {WAIT_S} s waiting for "
                              "#state: status written to the log (the "
                              f"token was asked {asked} times)")
            time.sleep(0.05)
        if asked != 1:
            raise Failure(f"the token was asked {asked} times")
        self.read_console()

        # The server goes away, then comes back on the same address.
        self.ask("stop", "stopped")
        self.wait_visible("#banner.on")
        banner = self.text("#banner")
        if not re.search("not answering", banner):
            raise Failure("banner: " + banner)
        self.ask("start", "started")
        self.wait("the banner gone and #state live",
                  "!document.querySelector('#banner').classList"
                  ".contains('on') && document.querySelector('#state')"
                  ".textContent.startsWith('live')")
        self.wait_visible("#pool-db")
        self.read_console()


def main():
    url, token, screenshot, control = sys.argv[1:5]
    # Killed by run.sh (a timeout): the browser is closed all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    test = Test(url, token, screenshot, control)
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    driver_log = profile + ".chromedriver.log"
    try:
        try:
            test.start_browser(profile, driver_log)
            test.run()
        except Failure as e:
            test.problems.insert(0, str(e))
        except WebDriverException as e:
            test.problems.insert(0, str(e).strip() or repr(e))
            test.driver_trouble = True
        finally:
            if test.driver:
                try:
                    test.read_console()
                except WebDriverException:
                    pass
                try:
                    test.driver.quit()
                except WebDriverException:
                    pass
        if test.problems and test.driver_trouble:
            try:
                with open(driver_log) as f:
                    tail = f.readlines()[-40:]
                print("chromedriver's log, last lines:\n" + "".join(tail),
                      file=sys.stderr)
            except OSError:
                pass
        if test.problems:
            print("dashboard test: " + "\n".join(test.problems),
                  file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        try:
            os.unlink(driver_log)
        except OSError:
            pass
    print("dashboard test: ok; screenshot " + screenshot)
    return 0


sys.exit(main())
