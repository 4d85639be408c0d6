//! A new clinic group from signup to its first visit on the page, the way a person does it: signup,
//! the e-mail link, password and authenticator, a clinic, an enrollment code, then the real `onshi-agent`
//! binary run with the commands the clinic page shows, and a result file in the terminal's folder.
//! The wall time is printed (goal: under three minutes by script; the figure is in docs/benchmarks.md),
//! not asserted: speed lives in benchmarks.

use std::time::Instant;

use crate::both_modes;
use crate::helpers::*;
use crate::mailbox::{link_path, sink};

both_modes!(
    a_new_group_goes_from_signup_to_its_first_visit_with_a_real_agent,
    |config| {
        crate::mailbox::route_mail_here(config);
    },
    |app| {
        let started = Instant::now();
        let mut b = app.browser();
        let email = format!("new-{}@example.jp", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let password = "Hinode-Clinic-2026-Start!";
        let r = b
            .post(
                "/signup",
                &[
                    ("group", "医療法人 日の出会"),
                    ("name", "日の出 太郎"),
                    ("email", &email),
                    ("password", password),
                    ("password2", password),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mail = sink().wait_for(&email, "/verify-email/").await;
        let verify = link_path(&mail, "/verify-email/");
        assert_eq!(b.post(&verify, &[]).await.status, 303);
        let r = b.post("/signin", &[("email", &email), ("password", password)]).await;
        assert_eq!(r.location(), "/account/totp/setup");
        let setup = b.get("/account/totp/setup").await;
        let secret = extract(&setup.body, "data-testid=\"totp-secret\">", "<").unwrap();
        let secret = onshi_identity::TotpSecret::from_base32(&secret).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
        let r = b.post("/account/totp/setup", &[("code", &secret.code_at(now).unwrap())]).await;
        assert_eq!(r.status, 200, "the recovery codes, then the first page");

        // The clinic, typed as people type it (full-width digits), and its enrollment code.
        let r = b.post("/clinics", &[("code", "１３１１２３４５６０"), ("name", "日の出内科"), ("start", "")]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let clinic_path = r.location().to_owned();
        let r = b.post(&format!("{clinic_path}/enrollment-codes"), &[]).await;
        assert_eq!(r.status, 200);
        let command = extract(&r.body, "data-testid=\"enroll-command\">", "</pre>").unwrap();
        let code = extract(&r.body, "data-testid=\"enrollment-code\">", "<").unwrap();
        assert!(
            command.contains(&format!("--server {}", app.base_url())) || command.contains("--server http"),
            "{command}"
        );

        // At the clinic: the agent, run with the page's commands (folders of this test's "terminal").
        let pc = ClinicPc::new();
        let (status, out) = pc.enroll(&app.base_url(), &code);
        assert_eq!(status, 0, "{out}");
        let (status, out) = pc.run(&["check"]);
        assert_eq!(status, 0, "{out}");
        let mut running = tokio::process::Command::from(pc.command(&["run"]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The first patient at the desk: the terminal writes its result file.
        let mut generator = onshi_agent::simulate::Generator::new("1311234560", 5, 7);
        let (file, card) = generator.next(time::OffsetDateTime::now_utc());
        onshi_agent::simulate::write_into(&pc.folder(if card { "face" } else { "res" }), &file).unwrap();

        // The receptions page shows it.
        let mut seen = false;
        for _ in 0..600 {
            let page = b.get("/").await;
            if extract(&page.body, "data-testid=\"today-visits\">", "<").is_some_and(|n| n != "0") {
                seen = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        running.kill().await.ok();
        assert!(seen, "the first visit reached the page");
        eprintln!("onboarding: signup to first visit on the page in {:.1} s (script)", started.elapsed().as_secs_f64());
    }
);
