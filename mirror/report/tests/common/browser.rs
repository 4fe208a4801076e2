//! A page opened in a real headless Chromium (Debian's), driven over the DevTools protocol:
//! what the console said, and what the page's script reports about its own elements.

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn chromium() -> Option<PathBuf> {
    let env = std::env::var_os("CHROMIUM").map(PathBuf::from);
    env.into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| p.exists())
}

pub struct Page {
    /// Console errors, uncaught exceptions and error log entries (failed loads included).
    pub errors: Vec<String>,
    /// What `probe` returned, parsed as JSON.
    pub probe: Value,
}

/// Opens `html`, runs `probe` (a JS expression giving a JSON string) after load, saves a
/// PNG screenshot of the first `size` pixels to `screenshot`.
pub fn open(html: &Path, probe: &str, screenshot: &Path, size: (u32, u32)) -> Page {
    let exe = chromium().expect("chromium installed");
    let options = LaunchOptions::default_builder()
        .path(Some(exe))
        .sandbox(false)
        .window_size(Some(size))
        .idle_browser_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let browser = Browser::new(options).expect("start headless chromium");
    let tab = browser.new_tab().unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    tab.add_event_listener(Arc::new(move |e: &Event| {
        let msg = match e {
            Event::RuntimeConsoleAPICalled(c) if format!("{:?}", c.params.Type) == "Error" => {
                Some(format!(
                    "console.error: {:?}",
                    c.params
                        .args
                        .iter()
                        .map(|a| a.value.clone())
                        .collect::<Vec<_>>()
                ))
            }
            Event::RuntimeExceptionThrown(x) => {
                Some(format!("exception: {}", x.params.exception_details.text))
            }
            Event::LogEntryAdded(l) if format!("{:?}", l.params.entry.level) == "Error" => {
                Some(format!("log: {}", l.params.entry.text))
            }
            _ => None,
        };
        if let Some(m) = msg {
            sink.lock().unwrap().push(m);
        }
    }))
    .unwrap();
    tab.navigate_to(&format!(
        "file://{}",
        html.canonicalize().unwrap().display()
    ))
    .unwrap();
    tab.wait_until_navigated().unwrap();
    let out = tab.evaluate(probe, false).unwrap();
    let text = out
        .value
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| panic!("probe gave no string: {:?}", out.description));
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(screenshot, png).unwrap();
    // Let late events (errors after load) arrive.
    std::thread::sleep(Duration::from_millis(300));
    let errors = errors.lock().unwrap().clone();
    Page {
        errors,
        probe: serde_json::from_str(&text).unwrap(),
    }
}
