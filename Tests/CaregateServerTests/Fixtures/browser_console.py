"""The console in headless Chromium (Selenium), as people use it. For BrowserTests.

browser_console.py CONFIG_JSON: base, developerToken, clinicAdminToken, operatorToken, appId,
organization (the clinic's X-Organization-Id), revokeScope, revokePath, screenshots (a
directory, or "" for none). Prints one JSON line of what the pages showed.
"""
import json, sys, requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

config = json.loads(sys.argv[1])
base = config["base"]
out = {}

options = Options()
options.binary_location = "/usr/bin/chromium"
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.implicitly_wait(5)


def shot(name):
    if config["screenshots"]:
        driver.save_screenshot("%s/%s.png" % (config["screenshots"], name))


def replaced(page):
    """A wait condition: `page` (the old html element) is no longer in the document. Chromium's
    driver sometimes says so with an inspector error ("Node with given id does not belong to
    the document") instead of a stale-element one, mid-navigation; both mean replaced."""
    def condition(_):
        try:
            return expected_conditions.staleness_of(page)(driver)
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
    return condition


def submit(button):
    """Clicks a form's button and waits until the next page has replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 10).until(replaced(page))


def sign_in(token):
    driver.delete_all_cookies()
    driver.get(base + "/console")
    driver.find_element(By.ID, "token").send_keys(token)
    submit(driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-in'] button"))


try:
    # The scope reference, filtered by credential type through its form.
    driver.get(base + "/scopes")
    out["scopeCounts"] = {i: driver.find_element(By.ID, i).text for i in ("count-scopes", "count-categories", "count-smart", "count-self-service")}
    shot("scopes")
    Select(driver.find_element(By.ID, "credentialType")).select_by_visible_text("Service Key")
    submit(driver.find_element(By.CSS_SELECTOR, "form.filters button"))
    out["serviceKeyScopes"] = sorted(a.get_attribute("id") for a in driver.find_elements(By.CSS_SELECTOR, "article.scope"))
    out["filterURL"] = driver.current_url

    # A developer creates a key and copies it from the page.
    sign_in(config["developerToken"])
    submit(driver.find_element(By.CSS_SELECTOR, "a[href='/console/apps/%s']" % config["appId"]))
    driver.find_element(By.ID, "key-name").send_keys("browser key")
    submit(driver.find_element(By.CSS_SELECTOR, "form[action$='/keys'] button"))
    key = driver.find_element(By.ID, "new-key").get_attribute("value")
    out["keyShown"] = key.startswith("cg_")
    me = requests.get(base + "/v3/marketplace/me", headers={"Authorization": "Bearer " + key, "X-Organization-Id": config["organization"]}, timeout=10)
    out["meStatus"] = me.status_code
    driver.get(base + "/console/apps/%s" % config["appId"])
    out["keyListedMasked"] = "browser key" in driver.page_source and key not in driver.page_source
    shot("console-keys")
    before = requests.get(base + config["revokePath"], headers={"Authorization": "Bearer " + key, "X-Organization-Id": config["organization"]}, timeout=10)
    out["beforeStatus"] = before.status_code

    # The clinic admin unticks one scope of the app and approves.
    sign_in(config["clinicAdminToken"])
    submit(driver.find_element(By.PARTIAL_LINK_TEXT, config["appName"]))
    box = driver.find_element(By.CSS_SELECTOR, "input[name='scopes'][value='%s']" % config["revokeScope"])
    out["wasTicked"] = box.is_selected()
    box.click()
    shot("console-installation")
    submit(driver.find_element(By.CSS_SELECTOR, "form[action$='/approve'] button"))
    out["stillTicked"] = driver.find_element(By.CSS_SELECTOR, "input[name='scopes'][value='%s']" % config["revokeScope"]).is_selected()
    after = requests.get(base + config["revokePath"], headers={"Authorization": "Bearer " + key, "X-Organization-Id": config["organization"]}, timeout=10)
    out["afterStatus"] = after.status_code
    trace = after.headers.get("X-Trace-Id")

    # The developer publishes a new version asking for one more scope; the clinic admin sees
    # what is new, ticks it and approves again, and the key may use it.
    installation_url = driver.current_url
    version = requests.post(base + "/manage/apps/%s/versions" % config["appId"], json={"scopes": config["versionScopes"]},
                            headers={"Authorization": "Bearer " + config["developerToken"]}, timeout=10)
    out["versionStatus"] = version.status_code
    driver.get(installation_url)
    out["newShown"] = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "ul.added li")]
    driver.find_element(By.CSS_SELECTOR, "input[name='scopes'][value='%s']" % config["newScope"]).click()
    submit(driver.find_element(By.CSS_SELECTOR, "form[action$='/approve'] button"))
    out["reviewDone"] = "new version" not in driver.page_source
    shot("console-reapproval")
    newRoute = requests.get(base + config["newPath"], headers={"Authorization": "Bearer " + key, "X-Organization-Id": config["organization"]}, timeout=10)
    out["newStatus"] = newRoute.status_code

    # The operator finds that 403 in the audit page by its trace id.
    sign_in(config["operatorToken"])
    submit(driver.find_element(By.LINK_TEXT, "Audit log"))
    driver.find_element(By.ID, "traceId").send_keys(trace)
    Select(driver.find_element(By.ID, "decision")).select_by_visible_text("Denied")
    submit(driver.find_element(By.CSS_SELECTOR, "form.filters button"))
    rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
    out["auditRows"] = [r.text for r in rows]
    out["auditFound"] = len(rows) == 1 and trace in rows[0].text and "403" in rows[0].text and "denied" in rows[0].text
    shot("console-audit")
finally:
    driver.quit()
print(json.dumps(out))
