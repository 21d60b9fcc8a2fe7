//! A real browser for the dashboard's tests: Debian's headless Chromium,
//! driven through chromedriver's WebDriver protocol (JSON over HTTP, so a
//! few lines of std networking drive it). Dropping it ends the session and
//! the driver.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::free_port;

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// One WebDriver call: (HTTP status, the answer's `value`); None when the
/// driver does not answer.
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    // chromedriver keeps the connection open: read the head, then exactly
    // Content-Length bytes.
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse().ok())?;
    while got.len() < head_end + len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&got[head_end..head_end + len]).to_string();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Some((code, v["value"].clone()))
}

impl Browser {
    /// A headless Chromium with a profile in `profile` (a test's temp dir).
    pub fn start(profile: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/install-deps.sh --test installs chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while call(port, "GET", "/status", None).is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Root (CI) needs --no-sandbox; the window is big enough for every panel.
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1300,1400", format!("--user-data-dir={}", profile.display()),
        ]}}}});
        let (code, v) = call(port, "POST", "/session", Some(&caps)).expect("chromedriver answers");
        assert_eq!(code, 200, "a Chromium session: {v}");
        let session = v["sessionId"].as_str().expect("a session id").to_string();
        Browser { driver, port, session }
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        let (code, v) = call(self.port, method, &path, body.as_ref()).expect("chromedriver answers");
        assert_eq!(code, 200, "{method} {what}: {v}");
        v
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({"url": url})));
    }

    /// Run `script` (a function body) in the page; its return value.
    pub fn eval(&self, script: &str) -> Value {
        self.cmd("POST", "execute/sync", Some(json!({"script": script, "args": []})))
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "element", Some(json!({"using": "css selector", "value": css})));
        v.as_object().and_then(|o| o.values().next()).and_then(|id| id.as_str()).expect("an element").to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("element/{id}/click"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("element/{id}/value"), Some(json!({"text": text})));
    }

    /// The text of the open `confirm()` dialog, accepted.
    pub fn accept_dialog(&self) -> String {
        let text = self.cmd("GET", "alert/text", None).as_str().unwrap_or_default().to_string();
        self.cmd("POST", "alert/accept", Some(json!({})));
        text
    }

    /// A PNG of the window, for a person to look at.
    pub fn screenshot(&self, to: &Path) {
        let v = self.cmd("GET", "screenshot", None);
        let png = base64_decode(v.as_str().expect("base64 PNG"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(self.port, "DELETE", &format!("/session/{}", self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (WebDriver's screenshots); no crate for one function.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_as_the_standard_says() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
