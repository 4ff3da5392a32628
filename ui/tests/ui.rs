//! `tapedeck ui`'s tests: the JSON API in process, and the page in a real headless Chromium
//! driven over WebDriver (Debian `chromium` + `chromium-driver`, installed by `./x setup`).

#[path = "ui/api.rs"]
mod api;
#[path = "ui/browser.rs"]
mod browser;
#[path = "ui/replays.rs"]
mod replays;
#[path = "ui/support.rs"]
mod support;
