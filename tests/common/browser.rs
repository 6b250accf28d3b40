//! A real browser for tests: Debian's headless Chromium driven through
//! chromedriver with the W3C WebDriver protocol (plain JSON over loopback
//! HTTP), so a test can open a page as a person would, read it, click, and
//! keep a screenshot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// The narrowest window Chromium opens, in pixels.
const MIN_WINDOW_WIDTH: u32 = 500;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// How the browser starts.
pub struct BrowserOptions {
    /// Window width and height (a phone: 375x812). A width under 500
    /// pixels, which Chromium does not open a window at, is the viewport
    /// of Chromium's device emulation.
    pub window: (u32, u32),
    /// Turn JavaScript off, to prove a page works without it.
    pub javascript: bool,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start(options: BrowserOptions) -> Browser {
        let chromedriver =
            which("chromedriver").expect("chromedriver is not installed: run scripts/setup.sh");
        let chromium = which("chromium").expect("chromium is not installed: run scripts/setup.sh");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::TempDir::new().expect("profile dir");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        for _ in 0..100 {
            if browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (w, h) = options.window;
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--window-size={w},{h}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let js = if options.javascript { 1 } else { 2 };
        let mut chrome = json!({
            "binary": chromium,
            "args": args,
            "prefs": { "profile.managed_default_content_settings.javascript": js }
        });
        // Chromium keeps a window at least 500 pixels wide: a phone's
        // narrower viewport is Chromium's own device emulation (its
        // viewport meta tag honoured, as on a phone). Touch emulation
        // stays off: chromedriver's click never returns with it.
        if w < MIN_WINDOW_WIDTH {
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": { "width": w, "height": h, "pixelRatio": 1.0, "mobile": true, "touch": false }
            });
        }
        let session = browser
            .call(
                "POST",
                "/session",
                json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": chrome
                }}}),
            )
            .await;
        let id = session["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        // Find elements as soon as they appear, waiting for slow pages on a busy machine.
        browser
            .call(
                "POST",
                "/timeouts",
                json!({ "implicit": 10_000, "pageLoad": 60_000, "script": 30_000 }),
            )
            .await;
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    /// A WebDriver command; `Err` carries the driver's error object.
    async fn try_call(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let value: Value = response.json().await.expect("WebDriver answers JSON");
        if value["value"]["error"].is_string() {
            return Err(value["value"].clone());
        }
        Ok(value["value"].clone())
    }

    /// Opens a URL.
    pub async fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// Waits until the page's text contains `needle` (after a click that
    /// navigates), and returns the text.
    pub async fn wait_for_text(&self, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {needle:?}: {text}");
    }

    /// The visible text of the page. A page that navigates while it is read
    /// (after a click) replaces its body: read the new one.
    pub async fn text(&self) -> String {
        for _ in 0..50 {
            let body = self.find("body").await;
            match self
                .try_call("GET", &format!("/element/{body}/text"), Value::Null)
                .await
            {
                Ok(text) => return text.as_str().unwrap_or_default().to_string(),
                Err(error) if error["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("WebDriver text: {error}"),
            }
        }
        panic!("the page kept changing while it was read");
    }

    /// The element matching a CSS selector (panics if there is none).
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Types into an element.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Clicks an element.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call("POST", &format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Whether the page scrolls sideways (a layout too wide for the window).
    pub async fn overflows_horizontally(&self) -> bool {
        let (scroll, viewport) = self.widths().await;
        scroll > viewport
    }

    /// The document's scroll width and the viewport's width, in CSS pixels
    /// (`document.documentElement.scrollWidth`, `window.innerWidth`).
    pub async fn widths(&self) -> (u64, u64) {
        let answer = self
            .script("return [document.documentElement.scrollWidth, window.innerWidth];")
            .await;
        let width = |i: usize| answer[i].as_u64().expect("a width in pixels");
        (width(0), width(1))
    }

    /// The value a script returns (`return ...;`), run in the page.
    pub async fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Makes the viewport `width` x `height` CSS pixels, as a phone's
    /// (Chromium's device emulation, through chromedriver's DevTools
    /// command): for a screenshot of a whole page, as tall as it.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": true
            }}),
        )
        .await;
    }

    /// Saves a screenshot under `target/screenshots/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }
}

fn which(program: &str) -> Option<String> {
    image_factory::config::find_on_path(program).map(|p| p.display().to_string())
}
