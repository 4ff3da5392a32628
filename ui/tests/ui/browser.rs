//! The page in a real headless Chromium, driven over WebDriver (plain HTTP JSON to
//! chromedriver): the list, a click filter, the detail pane, the trace tree, the service map and
//! a rule edit. A screenshot of each page is saved under the target dir
//! (`$CARGO_TARGET_TMPDIR/ui-screenshots/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use tapedeck_proto::Direction;
use tokio::io::AsyncBufReadExt as _;

use crate::support::{Server, encode, request, shop};

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver on a free port, and one Chromium session.
struct Browser {
    driver: tokio::process::Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

fn program(name: &str) -> Result<PathBuf> {
    let env = format!("TAPEDECK_{}", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&env) {
        return Ok(path.into());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .with_context(|| format!("{name} not found (install it with `./x setup`, or set {env})"))
}

impl Browser {
    async fn start() -> Result<Browser> {
        let chromedriver = program("chromedriver")?;
        let chromium = program("chromium")?;
        // Port 0: chromedriver binds a free port itself and says which (a port found free here
        // and handed over could be taken by another test in between).
        let mut driver = tokio::process::Command::new(&chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let stdout = driver.stdout.take().context("chromedriver's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        // "ChromeDriver was started successfully on port 39361."
        let port: u16 = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, rest)) = line.split_once("started successfully on port ") {
                    let digits = rest.trim_end_matches('.');
                    return digits
                        .parse()
                        .with_context(|| format!("chromedriver's port in {line:?}"));
                }
            }
            bail!("chromedriver exited before it was ready")
        })
        .await
        .context("chromedriver not ready in 20 s")??;
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let profile = tempfile::tempdir()?;
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--window-size=1366,900",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
            }},
        });
        let created = call(addr, "POST", "/session", &capabilities).await?;
        let session = created["sessionId"]
            .as_str()
            .context("no session id")?
            .to_owned();
        let browser = Browser {
            driver,
            addr,
            session,
            _profile: profile,
        };
        browser
            .post(
                "timeouts",
                json!({ "implicit": 10_000, "script": 20_000, "pageLoad": 30_000 }),
            )
            .await?;
        Ok(browser)
    }

    async fn post(&self, what: &str, body: Value) -> Result<Value> {
        call(
            self.addr,
            "POST",
            &format!("/session/{}/{what}", self.session),
            &body,
        )
        .await
    }

    async fn get(&self, what: &str) -> Result<Value> {
        call(
            self.addr,
            "GET",
            &format!("/session/{}/{what}", self.session),
            &Value::Null,
        )
        .await
    }

    async fn open(&self, url: &str) -> Result<()> {
        self.post("url", json!({ "url": url })).await?;
        self.until("document.body.dataset.ready === 'true'").await?;
        Ok(())
    }

    async fn find(&self, css: &str) -> Result<String> {
        let found = self
            .post("element", json!({ "using": "css selector", "value": css }))
            .await
            .with_context(|| format!("finding {css}"))?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no element {css}"))
    }

    async fn click(&self, element: &str) -> Result<()> {
        self.post(&format!("element/{element}/click"), json!({}))
            .await?;
        Ok(())
    }

    async fn script(&self, body: &str) -> Result<Value> {
        self.post("execute/sync", json!({ "script": body, "args": [] }))
            .await
    }

    /// Waits (inside the page, up to the script timeout) until the expression is truthy, and
    /// returns its value.
    async fn until(&self, expression: &str) -> Result<Value> {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             const check = () => {{
               let v; try {{ v = ({expression}); }} catch (e) {{ v = false; }}
               if (v) done(v); else setTimeout(check, 25);
             }};
             check();"
        );
        self.post("execute/async", json!({ "script": script, "args": [] }))
            .await
            .with_context(|| format!("waiting for {expression}"))
    }

    async fn url(&self) -> Result<String> {
        Ok(self.get("url").await?.as_str().unwrap_or("").to_owned())
    }

    async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let data = self.get("screenshot").await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().context("no screenshot")?)?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    async fn quit(mut self) -> Result<()> {
        let _ = call(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            &Value::Null,
        )
        .await;
        self.driver.kill().await?;
        Ok(())
    }
}

/// One WebDriver command; returns its `value`, or fails with WebDriver's error.
async fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Result<Value> {
    let body = (!body.is_null()).then(|| body.to_string());
    let (status, text) = request(addr, method, path, body.as_deref()).await?;
    let answer: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{method} {path}: {}", String::from_utf8_lossy(&text)))?;
    if status != 200 {
        bail!("{method} {path}: {status} {}", answer["value"]);
    }
    Ok(answer["value"].clone())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_filters_details_traces_maps_and_edits_rules() -> Result<()> {
    let server = Server::start(true).await?;
    let (status, made) = server
        .send(
            "POST",
            "/api/snapshots",
            &json!({"name": "shop", "service": "orders"}),
        )
        .await?;
    ensure!(status == 201, "{made}");
    let browser = Browser::start().await?;
    let result = scenario(&server, &browser).await;
    let quit = browser.quit().await;
    server.stop().await?;
    result.and(quit)
}

async fn scenario(server: &Server, browser: &Browser) -> Result<()> {
    let exchanges = shop();

    // The list shows every exchange of the store (44, one page).
    browser.open(&server.url("/")).await?;
    browser
        .until(&format!(
            "document.querySelectorAll('#rows tr.row').length === {}",
            exchanges.len()
        ))
        .await?;
    let shown = browser
        .script("return [...document.querySelectorAll('#rows tr.row')].map(r => r.dataset.id)")
        .await?;
    let mut shown: Vec<String> = serde_json::from_value(shown)?;
    let mut expected: Vec<String> = exchanges.iter().map(|e| hex(&e.id)).collect();
    shown.sort();
    expected.sort();
    ensure!(shown == expected, "the list shows other rows");
    browser.screenshot("explore").await?;

    // A click on "+" beside a status narrows the list and puts the filter in the URL.
    let created = exchanges.iter().filter(|e| e.status == 201).count();
    let row = browser
        .script(
            "return document.querySelector('button.add[aria-label=\"filter status = 201\"]').closest('tr')",
        )
        .await?;
    browser
        .click(row[ELEMENT].as_str().context("no row with status 201")?)
        .await?;
    let plus = browser
        .find("tr.row[aria-selected=\"true\"] button.add[data-column=\"status\"]")
        .await?;
    browser.click(&plus).await?;
    browser
        .until(&format!(
            "document.querySelectorAll('#rows tr.row').length === {created} && location.search.includes('q=')"
        ))
        .await?;
    let url = browser.url().await?;
    ensure!(
        url.contains(&format!("q={}", encode("status = 201")).replace("%20", "+")),
        "{url}"
    );
    ensure!(
        browser
            .script("return document.getElementById('filter').value")
            .await?
            == json!("status = 201")
    );

    // The detail pane: a binary body as hex.
    let receipt = exchanges
        .iter()
        .find(|e| e.path.ends_with("/receipt"))
        .context("a receipt")?;
    browser
        .open(&server.url(&format!("/?id={}", hex(&receipt.id))))
        .await?;
    let dump = browser
        .until("document.querySelector('#response [data-kind=\"hex\"]')?.textContent")
        .await?;
    ensure!(
        dump.as_str()
            .is_some_and(|d| d.starts_with("00000000  25 50 44 46")),
        "{dump}"
    );
    browser.screenshot("detail-binary").await?;

    // A redacted header shown as redacted, and the trace tree: the inbound request with the
    // outbound call it caused under it.
    let charge = exchanges
        .iter()
        .find(|e| e.direction == Direction::Outbound as i32)
        .context("an outbound call")?;
    let cause = exchanges
        .iter()
        .find(|e| {
            e.direction == Direction::Inbound as i32
                && e.trace_id == charge.trace_id
                && e.method == "POST"
        })
        .context("the inbound request of the call's trace")?;
    browser
        .open(&server.url(&format!("/?id={}", hex(&charge.id))))
        .await?;
    let badge = browser
        .until("document.querySelector('#request tr[data-header=\"x-api-key\"] .redacted')?.textContent")
        .await?;
    ensure!(badge == json!("redacted"), "{badge}");
    let parent = browser
        .until(&format!(
            "document.querySelector('#trace a[data-id=\"{}\"]')?.closest('ul').closest('li').querySelector(':scope > a').dataset.id",
            hex(&charge.id)
        ))
        .await?;
    ensure!(parent == json!(hex(&cause.id)), "{parent}");
    browser.screenshot("detail-trace").await?;

    // The service map.
    browser.open(&server.url("/?view=map")).await?;
    browser
        .until("document.querySelector('#map g.edge[data-source=\"orders\"]')")
        .await?;
    browser
        .until("document.querySelector('#map g.node[data-node=\"(clients)\"]')")
        .await?;
    browser.screenshot("map").await?;

    // A rule edit: written to snapshot.json and valid.
    let (_, snapshot) = server.get("/api/snapshots/shop").await?;
    let jwt = snapshot["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["kind"] == "jwt"))
        .and_then(|r| r["index"].as_u64())
        .context("a jwt rule")?;
    browser
        .open(&server.url("/?view=snapshots&snapshot=shop"))
        .await?;
    let option = browser
        .find(&format!(
            "#rules tr[data-rule=\"{jwt}\"] select.action option[value=\"ignore\"]"
        ))
        .await?;
    let select = browser
        .find(&format!("#rules tr[data-rule=\"{jwt}\"] select.action"))
        .await?;
    browser.click(&select).await?;
    browser.click(&option).await?;
    let message = browser
        .until("document.getElementById('rule-message')?.textContent")
        .await?;
    ensure!(
        message
            .as_str()
            .is_some_and(|m| m.contains("written and validated")),
        "{message}"
    );
    let dir = server
        .snapshots
        .clone()
        .context("a snapshot dir")?
        .join("shop");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("snapshot.json"))?)?;
    ensure!(
        manifest["tokens"][jwt as usize]["replay"] == "ignore",
        "{manifest}"
    );
    let (valid, problems) = tapedeck_analyzer::snapshot::validate(&dir);
    ensure!(valid.is_some() && problems.is_empty(), "{problems:?}");
    browser
        .until("document.getElementById('validity')?.textContent.startsWith('valid')")
        .await?;
    browser.screenshot("snapshots").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_page_shows_the_three_way_view_and_marking_noise_changes_the_verdict()
-> Result<()> {
    let temp = tempfile::tempdir()?;
    let (server, noise) = crate::replays::report_server(temp.path()).await?;
    let browser = Browser::start().await?;
    let result = replay_scenario(&server, &browser, &noise).await;
    let quit = browser.quit().await;
    server.stop().await?;
    result.and(quit)
}

async fn replay_scenario(
    server: &Server,
    browser: &Browser,
    noise: &std::path::Path,
) -> Result<()> {
    // At laptop width; reports only (no traffic): the page opens on the first report.
    browser
        .post("window/rect", json!({ "width": 1280, "height": 800 }))
        .await?;
    browser.open(&server.url("/")).await?;
    let verdict = browser
        .until("document.querySelector('#verdict-report')?.dataset.verdict")
        .await?;
    ensure!(verdict == json!("fail"), "{verdict}");
    ensure!(browser.url().await?.contains("view=replays"));
    let now = browser
        .until("document.querySelector('#verdict-now')?.dataset.verdict")
        .await?;
    ensure!(now == json!("fail"), "{now}");
    // The gate's statistics, both arms' distributions side by side, the three-way view.
    browser
        .until("document.querySelector('#gate .goal[data-goal^=\"errors\"] table.gate tr[data-row=\"overall\"]')")
        .await?;
    let dist = browser
        .until(&format!(
            "document.querySelectorAll('#distributions figure[data-endpoint=\"{}\"] td.barcell').length",
            crate::replays::ENDPOINT
        ))
        .await?;
    ensure!(dist == json!(20), "{dist}");
    let row = browser
        .until("[...document.querySelectorAll('#three-way tr[data-field=\"$.build\"]')].map(r => [...r.cells].slice(1, 5).map(c => c.textContent))[0]")
        .await?;
    ensure!(
        row == json!(["\"v1\"", "\"v1\"", "\"v2\"", "differs"]),
        "{row}"
    );
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )
        .await?;
    ensure!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "wider than 1280 px by {overflow}"
    );
    browser.screenshot("replay").await?;

    // Mark $.build as noise from the keyboard: Enter on the focused button.
    let button = browser
        .find("#three-way tr[data-field=\"$.build\"] button.mark")
        .await?;
    browser
        .post(
            &format!("element/{button}/value"),
            json!({ "text": "\u{E007}" }),
        )
        .await?;
    let now = browser
        .until("document.querySelector('#verdict-now')?.dataset.verdict === 'pass' && document.querySelector('#noise-message')?.textContent")
        .await?;
    ensure!(
        now.as_str().is_some_and(|m| m.contains("verdict now pass")),
        "{now}"
    );
    let outcome = browser
        .until("document.querySelector('#three-way tr[data-field=\"$.build\"]')?.dataset.outcome")
        .await?;
    ensure!(outcome == json!("noise"), "{outcome}");
    ensure!(
        browser
            .script("return document.querySelector('#verdict-report').dataset.verdict")
            .await?
            == json!("fail")
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(noise)?)?;
    ensure!(
        written["rules"][0]["endpoint"] == crate::replays::ENDPOINT
            && written["rules"][0]["field"] == "$.build",
        "{written}"
    );
    browser.screenshot("replay-marked").await?;
    Ok(())
}
