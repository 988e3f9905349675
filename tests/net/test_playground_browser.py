"""The playground page in headless Chromium (Selenium with Debian's chromedriver): it loads,
connects over the WebSocket, sends a message, shows streamed text and the timing figures."""

import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from kvserve_harness import KvServe, parse_args


def make_driver():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    return driver


def main():
    args = parse_args()
    with KvServe(args.kvserve, model_args=args.model_args) as s:
        driver = make_driver()
        try:
            driver.get(s.url + "/")
            wait = WebDriverWait(driver, 60)
            wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "connected"))
            wait.until(lambda d: d.find_element(By.ID, "send").is_enabled())
            assert "kvserve.v1" in driver.find_element(By.ID, "model").text
            driver.find_element(By.ID, "max_tokens").clear()
            driver.find_element(By.ID, "max_tokens").send_keys("24")
            driver.find_element(By.ID, "input").send_keys("Tell me about caches.")
            driver.find_element(By.ID, "send").click()
            # Text streams in before the answer is complete.
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".assistant .text") and
                       d.find_elements(By.CSS_SELECTOR, ".assistant .text")[-1].text.strip())
            stats = WebDriverWait(driver, 120).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".assistant .stats"))[-1]
            assert "error" not in stats.get_attribute("class"), stats.text
            ttft = float(stats.get_attribute("data-ttft-ms"))
            tps = stats.get_attribute("data-tokens-per-second")
            cached = int(stats.get_attribute("data-cached-tokens"))
            assert ttft > 0, stats.text
            assert tps and float(tps) > 0, stats.text
            assert cached >= 0
            assert "TTFT" in stats.text and "tokens/s" in stats.text and "cached" in stats.text
            answer = driver.find_elements(By.CSS_SELECTOR, ".assistant .text")[-1].text
            assert answer.strip(), "no answer text"
            # A second turn reuses the conversation prefix: cached tokens appear.
            driver.find_element(By.ID, "input").send_keys("And more?")
            wait.until(lambda d: d.find_element(By.ID, "send").is_enabled())
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 120).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, ".assistant .stats")) == 2)
            second = driver.find_elements(By.CSS_SELECTOR, ".assistant .stats")[1]
            print("playground:", stats.text, "|", second.text)
        finally:
            driver.quit()
    print("playground browser test: ok")


if __name__ == "__main__":
    sys.exit(main())
