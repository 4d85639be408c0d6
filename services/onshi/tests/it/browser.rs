//! The pages in a real browser: headless Chromium driven over WebDriver (chromedriver), signing in with
//! both factors and clicking through the drill-down from the group to a clinic to a day. Screenshots of
//! every page are saved as test artifacts (`$ONSHI_ARTIFACTS_DIR`, default `<target>/browser-artifacts`).
//!
//! Needs `chromium` and `chromedriver` (`scripts/browser-deps` installs them). Without them the test is
//! skipped with a note, unless `ONSHI_TEST_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use onshi_domain::Role;

use crate::helpers::*;

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("ONSHI_ARTIFACTS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| "target".into());
        target.join("browser-artifacts")
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Finds an element, waiting for the page that a click started to load.
async fn find(c: &fantoccini::Client, css: &str) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
    c.wait().at_most(Duration::from_secs(15)).for_element(Locator::Css(css)).await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_signs_in_and_drills_down_from_group_to_clinic_to_day() {
    let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromedriver) = chromedriver else {
        if std::env::var("ONSHI_TEST_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("ONSHI_TEST_REQUIRE_BROWSER=1 but chromedriver is not installed (run scripts/browser-deps)");
        }
        eprintln!("skipping the browser test: chromedriver not installed (scripts/browser-deps)");
        return;
    };
    let app = spawn_app(Mode::Embedded).await;
    assert_eq!(app.post_events(0, &app.receptions(0, 12, 5)).await.status(), 202);
    eventually(WAIT, "applied", || async { app.store().raw_event_count().await.unwrap() == 12 }).await;
    let user = app.user(Role::Owner).await;

    let port = free_port();
    let mut driver = tokio::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1024,1366", format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let mut client = None;
    for _ in 0..50 {
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.clone());
        match builder.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let c = client.expect("chromedriver session");
    // localhost is a secure context for the browser, so __Host- cookies work over plain http here.
    let base = format!("http://localhost:{}", app.running().port);
    let dir = artifacts();
    let shot = |name: &'static str| {
        let c = c.clone();
        let dir = dir.clone();
        async move {
            let png = c.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    };

    c.goto(&format!("{base}/signin")).await.unwrap();
    shot("01-signin").await;
    find(&c, "input[name=email]").await.unwrap().send_keys(&user.email).await.unwrap();
    find(&c, "input[name=password]").await.unwrap().send_keys(&user.password).await.unwrap();
    find(&c, "form[action='/signin'] button").await.unwrap().click().await.unwrap();
    find(&c, "input[name=code]").await.unwrap().send_keys(&user.next_code()).await.unwrap();
    shot("02-totp").await;
    find(&c, "form[action='/signin/totp'] button").await.unwrap().click().await.unwrap();
    find(&c, "nav a[href='/dashboard']").await.expect("signed in with both factors");
    // The owner lands on the 利用率 page; today's receptions are one click away.
    let h1 = find(&c, "h1").await.unwrap().text().await.unwrap();
    assert!(h1.contains("マイナ保険証利用率"), "{h1}");
    find(&c, "nav a[href='/']").await.unwrap().click().await.unwrap();
    let h1 = find(&c, "h1").await.unwrap().text().await.unwrap();
    assert!(h1.contains("受付ログ"), "{h1}");
    shot("03-receptions").await;

    // Group → clinic → day, by clicking.
    find(&c, "nav a[href='/dashboard']").await.unwrap().click().await.unwrap();
    assert!(find(&c, "table[data-testid=usage]").await.is_ok());
    shot("04-dashboard").await;
    let clinic = &app.clinics[0].clinic;
    find(&c, &format!("a[href='/dashboard/clinics/{}']", clinic.id)).await.unwrap().click().await.unwrap();
    find(&c, "table[data-testid=methods]").await.expect("the clinic page");
    let h1 = find(&c, "h1").await.unwrap().text().await.unwrap();
    assert!(h1.contains(&clinic.name), "{h1}");
    shot("05-clinic").await;
    find(&c, "a[href*='/receptions?date=']").await.unwrap().click().await.unwrap();
    find(&c, "table[data-testid=receptions]").await.expect("the day's page");
    let rows = c.find_all(Locator::Css("table[data-testid=receptions] tbody tr")).await.unwrap();
    assert!(!rows.is_empty(), "the day's receptions are listed");
    shot("06-day").await;

    // Every other page renders with its heading.
    for (path, name) in [
        ("/onboarding", "07-onboarding"),
        ("/staff", "08-staff"),
        ("/fleet", "09-fleet"),
        ("/billing", "10-billing"),
        ("/audit", "11-audit"),
        ("/settings/api-tokens", "12-api-tokens"),
        ("/account", "13-account"),
        ("/dashboard?lang=en", "14-dashboard-en"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let h1 = find(&c, "h1").await.unwrap().text().await.unwrap();
        assert!(!h1.is_empty(), "{path} has a heading");
        shot(name).await;
    }
    let h1 = find(&c, "h1").await.unwrap().text().await.unwrap();
    assert!(h1.contains("usage"), "English on request: {h1}");

    c.close().await.ok();
    driver.kill().await.ok();
    app.teardown().await;
}
