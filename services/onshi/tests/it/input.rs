//! Whatever a query string holds, no page or API route fails: every date, month and number is parsed with
//! bounds, and a bad one is a 4xx naming the field. The regression requests first (each once crashed a
//! handler, issue #15), in both modes; then a property sweep over every GET route of `ROUTES`.

use onshi_api::{Access, ROUTES};
use onshi_domain::Role;
use rand::{Rng, SeedableRng};

use crate::both_modes;
use crate::helpers::*;

/// A concrete path for a route pattern: clinics and months get real values, other ids a well-formed
/// one that exists nowhere.
fn concrete(app: &TestApp, pattern: &str) -> String {
    pattern
        .replace("{clinic}", &app.clinics[0].clinic.id.to_string())
        .replace("{month}", "2026-11")
        .replace("{token}", "tok_00000000000000000000000000000000")
        .replace("{device}", "dev_00000000000000000000000000000000")
        .replace("{user}", "usr_00000000000000000000000000000000")
        .replace("{export}", "00000000-0000-0000-0000-000000000000")
        .replace("{visit}", "00000000-0000-0000-0000-000000000000")
}

async fn api_token(app: &TestApp, browser: &mut Browser) -> String {
    let r = browser
        .post(
            "/settings/api-tokens",
            &[
                ("name", "input sweep"),
                ("scope", "clinics:read"),
                ("scope", "receptions:read"),
                ("scope", "audit:read"),
                ("scope", "usage:read"),
                ("days", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = app;
    extract(&r.body, "data-testid=\"api-token\">", "<").unwrap()
}

both_modes!(dates_far_outside_the_calendar_are_a_400_not_a_crash, |app| {
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let clinic = app.clinics[0].clinic.id;
    for path in [
        "/audit?to=9999-12-31".to_owned(),
        "/audit?from=-9999-01-01".to_owned(),
        "/audit.csv?to=9999-12-31".to_owned(),
        format!("/dashboard/clinics/{clinic}?to=-9999-01-01"),
        format!("/dashboard/clinics/{clinic}?from=9999-12-31"),
        format!("/clinics/{clinic}/receptions?date=9999-12-31"),
        "/dashboard?to=9999-12".to_owned(),
        "/dashboard?months=99999".to_owned(),
    ] {
        let r = owner.get(&path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("<h1"), "{path}: a page, not a dropped connection");
    }
    let token = api_token(app, &mut owner).await;
    for path in
        ["/api/v1/audit?to=9999-12-31".to_owned(), format!("/api/v1/clinics/{clinic}/receptions?date=-9999-01-01")]
    {
        let r = app.client.get(format!("{}{path}", app.base_url())).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{path}");
        assert!(body["error"]["field"].is_string(), "{path}: names the field");
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_string_makes_any_get_route_fail() {
    let app = spawn_app(Mode::Embedded).await;
    let (mut owner, _) = app.signed_in(Role::Owner).await;
    let token = api_token(&app, &mut owner).await;
    let keys = [
        "from", "to", "date", "month", "months", "format", "table", "clinics", "lang", "action", "actor", "result",
        "done", "days",
    ];
    let mut values: Vec<String> =
        ["9999-12-31", "-9999-01-01", "2026-02-30", "99999999999999999999", "-1", "", "%FF%FE", "<script>x</script>"]
            .map(str::to_owned)
            .to_vec();
    values.push("9".repeat(5000));
    // Random strings, printable and not, the same each run.
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    for _ in 0..3 {
        let len = rng.random_range(1..40);
        let s: String = (0..len).map(|_| char::from_u32(rng.random_range(0x20..0x3100)).unwrap_or('?')).collect();
        values.push(s);
    }
    let mut requests = 0;
    for route in ROUTES.iter().filter(|r| r.method == "get" && r.path != "/feed") {
        let path = concrete(&app, route.path);
        for key in keys {
            for value in &values {
                let query = serde_urlencoded::to_string([(key, value)]).unwrap();
                let url = format!("{path}?{query}");
                let status = match route.access {
                    Access::Token(_) => {
                        let r = app.client.get(format!("{}{url}", app.base_url())).bearer_auth(&token).send().await;
                        r.unwrap_or_else(|e| panic!("GET {url}: {e}")).status().as_u16()
                    }
                    _ => owner.get(&url).await.status,
                };
                assert!(status < 500, "GET {url} answered {status}");
                requests += 1;
            }
        }
    }
    assert!(requests > 1000, "{requests}");
    app.teardown().await;
}
