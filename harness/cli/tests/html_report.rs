//! `report.html` looked at as a person would: the X.509 case is run on every variant by the
//! `ot-hil` binary, the page it writes is checked by `tidy` and opened in headless Chromium
//! through chromedriver (WebDriver on loopback). A screenshot of the X.509 known failure's ladder
//! is kept under `target/tmp/html-report/`.
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver`, tidy from
//! `tidy` (`.ci/run` installs them); where one is missing its test says so and returns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CASE: &str = "coaps-report-x509";
const X509_RUN: &str = "run-coaps-report-x509--ncs-v2_2_0";
/// The variant on which the X.509 handshake completes: its boards derived DTLS keys.
const WORKAROUND_RUN: &str = "run-coaps-report-x509--ncs-v2_2_0-workaround";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report")
}

/// Run the X.509 case on every variant once for all tests of this file; its output folder.
fn report_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = artifacts().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let status = Command::new(env!("CARGO_BIN_EXE_ot-hil"))
            .args(["run", "testcases", "--filter", CASE, "--out"])
            .arg(&out)
            .current_dir(workspace())
            .stdout(Stdio::null())
            .status()
            .expect("ot-hil runs");
        // Every variant's outcome is expected (PASS or XFAIL): exit code 0.
        assert_eq!(status.code(), Some(0), "ot-hil run {CASE}");
        out
    })
}

fn page() -> String {
    std::fs::read_to_string(report_dir().join("report.html")).expect("report.html written")
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[test]
fn report_is_valid_html_and_self_contained() {
    let html = page();
    // Static: the matrix and the ladders are in the HTML itself, not built by the script.
    assert_eq!(html.matches("<td class=\"cell ").count(), 5);
    assert!(html.contains("<svg class=\"ladder\""));
    for external in ["http://", "https://", "src=", "@import", "url("] {
        assert!(!html.contains(external), "report.html contains {external}");
    }
    let Some(tidy) = on_path("tidy") else {
        eprintln!("SKIPPED: tidy not installed (apt-get install tidy); HTML validity not checked");
        return;
    };
    let out = Command::new(tidy)
        .args(["-errors", "-q"])
        .arg(report_dir().join("report.html"))
        .output()
        .expect("tidy runs");
    let messages = String::from_utf8_lossy(&out.stderr);
    // Exit code 0: neither errors nor warnings (1: warnings, 2: errors).
    assert_eq!(out.status.code(), Some(0), "tidy:\n{messages}");
}

#[test]
fn summary_has_the_matrix_and_a_mermaid_diagram_of_the_failing_x509_handshake() {
    let md = std::fs::read_to_string(report_dir().join("summary.md")).expect("summary.md");
    assert!(md.contains(&format!("| {CASE} |")), "{md}");
    let section = md
        .split("#### ")
        .find(|s| s.starts_with(&format!("{CASE} @ ncs-v2.2.0 (XFAIL)")))
        .unwrap_or_else(|| panic!("no diagram for {CASE} @ ncs-v2.2.0:\n{md}"));
    assert!(
        section.contains("```mermaid\nsequenceDiagram\n"),
        "{section}"
    );
    assert!(
        section.contains("C->>S: ClientHello<br/>ext: ecjpake_kkpp"),
        "{section}"
    );
    assert!(
        section.contains("S-xC: Alert fatal illegal_parameter"),
        "{section}"
    );
    // The workaround's handshake completes: no diagram.
    assert!(
        !md.contains(&format!("{CASE} @ ncs-v2.2.0-workaround")),
        "{md}"
    );
}

/// chromedriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's browser log (`goog:loggingPrefs`): console messages and script errors.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

#[test]
fn report_in_chromium_shows_matrix_ladder_and_filters_the_timeline() {
    // Debian's package, or the Chrome that hosted CI runners carry.
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|p| on_path(p));
    let (Some(chromium), Some(chromedriver)) = (chromium, on_path("chromedriver")) else {
        eprintln!(
            "SKIPPED: chromium or chromedriver not installed \
             (apt-get install chromium chromium-driver); report.html not opened in a browser"
        );
        return;
    };
    let dir = report_dir();
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("results.json")).expect("results.json"),
    )
    .expect("results.json parses");
    let page = std::path::absolute(dir.join("report.html")).expect("absolute path");
    let driver = Driver::start(&chromedriver);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1400"]
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("WebDriver session");
        c.goto(&format!("file://{}#{X509_RUN}", page.display()))
            .await
            .expect("page opens");

        // The matrix: one cell per case run, classed by its outcome.
        let cells = js(
            &c,
            "const heads = [...document.querySelectorAll('table.matrix thead th')].map(t => t.textContent);
             return [...document.querySelectorAll('table.matrix td.cell')].map(td =>
               [td.closest('tr').querySelector('th').textContent, heads[td.cellIndex], td.className]);",
        )
        .await;
        let cells = cells.as_array().expect("cells");
        let expected = results["results"].as_array().expect("results");
        assert_eq!(cells.len(), expected.len(), "{cells:?}");
        for r in expected {
            let class = format!(
                "cell o-{}",
                r["outcome"].as_str().expect("outcome").to_lowercase()
            );
            assert!(
                cells.contains(&json!([r["case"], r["variant"], class])),
                "no {class} cell for {} @ {}: {cells:?}",
                r["case"],
                r["variant"]
            );
        }

        // The X.509 ladder on NCS 2.2.0 (opened by the link's anchor): the ClientHello with
        // ecjpake_kkpp highlighted, then the server's illegal_parameter alert in red.
        let ladder = js(
            &c,
            &format!(
                "const s = document.getElementById('{X509_RUN}');
                 const svg = s.querySelector('figure.handshake svg.ladder');
                 const rows = [...svg.querySelectorAll('g.row')];
                 const hello = rows.find(r => r.querySelector('.title').textContent === 'ClientHello');
                 const hot = hello ? [...hello.querySelectorAll('tspan.hot')].map(t => t.textContent) : [];
                 const alert = rows.find(r => r.classList.contains('alert'));
                 const text = alert && alert.querySelector('.title');
                 return {{
                   open: s.querySelector('details').open,
                   visible: svg.getBoundingClientRect().height > 0,
                   hot: hot,
                   hotColor: hello ? getComputedStyle(hello.querySelector('tspan.hot')).fill : null,
                   alert: text ? text.textContent : null,
                   alertColor: text ? getComputedStyle(text).fill : null,
                   alertAfterHello: rows.indexOf(alert) > rows.indexOf(hello),
                 }};"
            ),
        )
        .await;
        assert_eq!(ladder["open"], json!(true), "{ladder}");
        assert_eq!(ladder["visible"], json!(true), "{ladder}");
        assert_eq!(ladder["hot"], json!(["ecjpake_kkpp"]), "{ladder}");
        assert_eq!(
            ladder["alert"],
            json!("Alert fatal illegal_parameter"),
            "{ladder}"
        );
        assert_eq!(ladder["alertAfterHello"], json!(true), "{ladder}");
        let red = ladder["alertColor"].as_str().unwrap_or_default();
        let rgb: Vec<u32> = red
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(", ")
            .filter_map(|x| x.parse().ok())
            .collect();
        assert!(
            matches!(rgb[..], [r, g, b] if r > 180 && g < 80 && b < 80),
            "alert not red: {red}"
        );

        let figure = c
            .find(Locator::Css(&format!("#{X509_RUN} figure.handshake")))
            .await
            .expect("ladder figure");
        let png = figure.screenshot().await.expect("ladder screenshot");
        std::fs::write(artifacts().join("x509-ladder.png"), png).expect("screenshot saved");

        // The timeline's node filter: "client" hides the server's lines.
        let visible = "const rows = [...document.querySelectorAll('#{ID}-timeline tbody tr')];
             const shown = n => rows.filter(r => r.dataset.node === n && r.getClientRects().length > 0).length;
             return [shown('client'), shown('server'), rows.length];"
            .replace("{ID}", X509_RUN);
        let before = js(&c, &visible).await;
        assert!(before[0].as_u64() > Some(0) && before[1].as_u64() > Some(0), "{before}");
        c.find(Locator::Css(&format!(
            "#{X509_RUN}-timeline .filters button[data-node=\"client\"]"
        )))
        .await
        .expect("client filter")
        .click()
        .await
        .expect("click");
        let after = js(&c, &visible).await;
        assert_eq!(after[0], before[0], "client lines stay: {after}");
        assert_eq!(after[1], json!(0), "server lines hidden: {after}");
        let png = c.screenshot().await.expect("page screenshot");
        std::fs::write(artifacts().join("report.png"), png).expect("screenshot saved");

        // A CoAPS case whose handshake completed links the DTLS key log next to its capture,
        // in the failure-first part of its section (before the ladders), and the file is there.
        let keys = js(
            &c,
            &format!(
                "const s = document.getElementById('{WORKAROUND_RUN}');
                 const a = [...s.querySelectorAll('p.links a')].find(a => a.getAttribute('href').endsWith('/dtls-keys.log'));
                 const ladder = s.querySelector('figure.handshake');
                 return a ? {{ href: a.getAttribute('href'), text: a.textContent,
                   beforeLadder: !!ladder && !!(a.compareDocumentPosition(ladder) & Node.DOCUMENT_POSITION_FOLLOWING) }} : null;"
            ),
        )
        .await;
        assert_eq!(keys["text"], json!("DTLS key log (dtls-keys.log)"), "{keys}");
        assert_eq!(keys["beforeLadder"], json!(true), "{keys}");
        let key_log = dir.join(keys["href"].as_str().expect("href"));
        let text = std::fs::read_to_string(&key_log).expect("the linked key log exists");
        assert!(
            text.lines().all(|l| l.starts_with("CLIENT_RANDOM ")) && !text.is_empty(),
            "not an NSS key log: {text}"
        );

        // The provenance says which seed and which clock the run had.
        let provenance = js(
            &c,
            "return Object.fromEntries([...document.querySelectorAll('ul.prov li')].map(li =>
               [li.querySelector('span').textContent, li.textContent]));",
        )
        .await;
        let seed = provenance["seed"].as_str().unwrap_or_default();
        assert!(seed.starts_with("seed 0 "), "{provenance}");
        let clock = provenance["clock"].as_str().unwrap_or_default();
        assert!(
            clock.contains("seconds since the run started at "),
            "{provenance}"
        );

        // No console errors while the page was used.
        let log = c.issue_cmd(BrowserLog).await.expect("browser log");
        let errors: Vec<&Value> = log
            .as_array()
            .map(|l| l.iter().filter(|e| e["level"] == "SEVERE").collect())
            .unwrap_or_default();
        assert!(errors.is_empty(), "console errors: {errors:?}");
        c.close().await.expect("session closed");
    });
    drop(driver);
    eprintln!(
        "screenshots: {}",
        artifacts().join("x509-ladder.png").display()
    );
}
