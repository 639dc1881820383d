//! Notifications end to end: a real daemon mails through a real SMTP
//! server on loopback (the test's sink) — one mail at once or a daily
//! digest, in each reader's language, with links to the records — keeps an
//! unread count and a notifications page, and never loses a mail or holds
//! up business while the mail server refuses.

use super::web::{
    Browser, add_partner_user, create_partner, link, new_lead, offer_leads_in_taiwan,
};
use guanxi_tests::NodeSetup;
use guanxi_tests::smtp_sink::SmtpSink;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");
const WAIT: Duration = Duration::from_secs(30);

/// Signs in (choosing a password at first) and saves mail settings.
async fn settings(b: &mut Browser, email: &str, mail: &str, language: &str) {
    let page = b.get("/account").await;
    let csrf = Browser::csrf(&page);
    let saved = b
        .post(
            "/account",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("mail", mail),
                ("language", language),
                ("time_zone", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
}

#[tokio::test]
async fn partners_are_told_by_mail_at_once_or_in_a_digest_and_in_the_web_view() {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeSetup::init(Path::new(BIN), dir.path(), "acme").expect("init");
    let mut config = std::fs::read_to_string(node.config_file()).expect("config");
    config.push_str(&format!(
        "\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"Acme PRM <prm@acme.example>\"\ndigest_hour = 8\n",
        sink.port()
    ));
    std::fs::write(node.config_file(), config).expect("write config");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let admin_password = daemon.first_admin_password().expect("first admin");

    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    let mei_password = add_partner_user(&mut staff, "globex", "mei", "Mei").await;
    let wen_password = add_partner_user(&mut staff, "globex", "wen", "Wen").await;
    offer_leads_in_taiwan(&mut staff, "72").await;

    // Mei wants each notification at once, in Chinese; Wen a daily digest.
    let mut mei = Browser::new(&node, &daemon);
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    settings(&mut mei, "mei@globex.example", "immediate", "zh-TW").await;
    let mut wen = Browser::new(&node, &daemon);
    assert_eq!(wen.login("wen", &wen_password).await.status, 303);
    settings(&mut wen, "wen@globex.example", "digest", "en").await;

    new_lead(&mut staff, "Contoso").await;
    let mails = sink.wait_for(1, WAIT).await;
    let first = &mails[0];
    assert_eq!(first.to, vec!["mei@globex.example".to_string()]);
    assert_eq!(first.from, "prm@acme.example");
    assert!(
        first.subject.contains("分派了一筆商機給您"),
        "{}",
        first.subject
    );
    let offers = mei.get("/offers").await;
    let offer = link(&offers, "/offers/acme/");
    assert!(
        first.body.contains(&format!("{}{offer}", daemon.url()))
            && first.body.contains("Contoso")
            && first.body.contains("/account"),
        "{}",
        first.body
    );

    // In the web view: an unread count, then the list, which clears it.
    let home = mei.get("/").await;
    assert!(home.body.contains("id=\"unread\">1<"), "{}", home.body);
    let list = mei.get("/notifications").await;
    assert!(
        list.body.contains(&format!("href=\"{offer}\"")) && list.body.contains("class=\"new\""),
        "{}",
        list.body
    );
    let home = mei.get("/").await;
    assert!(!home.body.contains("id=\"unread\""), "{}", home.body);
    // Staff are not told of what they did themselves.
    let staff_list = staff.get("/notifications").await;
    assert!(
        !staff_list.body.contains("id=\"notices\""),
        "{}",
        staff_list.body
    );

    // Wen's digest goes out at 08:00 of her day (UTC here): a day later
    // at the latest it has arrived, listing the offer, in English.
    node.set_clock_offset(25 * 3_600_000);
    let mails = sink.wait_for(2, WAIT).await;
    let digest = &mails[1];
    assert_eq!(digest.to, vec!["wen@globex.example".to_string()]);
    assert!(
        digest.subject.contains("1 notifications")
            && digest.body.contains("offered you a lead")
            && digest.body.contains(&offer),
        "{digest:#?}"
    );

    // The mail server refuses: the lead is still created and offered; the
    // mail waits, the staff inbox says so, and it goes out once the server
    // takes mail again.
    sink.refuse(true);
    // A day later the sessions have ended: everyone signs in again.
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    new_lead(&mut staff, "Initech").await;
    until(&mut staff, "/", |body| {
        body.contains("being retried") && body.contains("451")
    })
    .await;
    assert_eq!(sink.mails().len(), 2);
    let offers = mei.get("/offers").await;
    assert!(offers.body.contains("Initech"), "{}", offers.body);
    sink.refuse(false);
    node.set_clock_offset(25 * 3_600_000 + 5 * 60_000);
    let mails = sink.wait_for(3, WAIT).await;
    let retried = &mails[2];
    assert!(
        retried.to == vec!["mei@globex.example".to_string()] && retried.body.contains("Initech"),
        "{retried:#?}"
    );
    // The queue forgets the mail once the server took it.
    until(&mut staff, "/", |body| !body.contains("being retried")).await;

    // Four hours before its deadline (72 hours after it was offered) an
    // offer still unanswered is reminded of, once.
    // Wen's digest of the day before goes out by then too, listing it.
    node.set_clock_offset(69 * 3_600_000);
    let mails = sink.wait_for(5, WAIT).await;
    let reminder = mails
        .iter()
        .find(|m| m.to == vec!["mei@globex.example".to_string()] && m.subject.contains("即將到期"))
        .unwrap_or_else(|| panic!("no reminder: {mails:#?}"));
    assert!(
        reminder.body.contains("Contoso") && reminder.body.contains(&offer),
        "{reminder:#?}"
    );
    let digest = mails
        .iter()
        .find(|m| {
            m.to == vec!["wen@globex.example".to_string()] && m.subject.contains("2 notifications")
        })
        .unwrap_or_else(|| panic!("no second digest: {mails:#?}"));
    assert!(
        digest.body.contains("must be answered soon: Contoso") && digest.body.contains("Initech"),
        "{digest:#?}"
    );
    assert_eq!(mei.login("mei", &mei_password).await.status, 303);
    until(&mut mei, "/notifications", |body| {
        body.contains("must be answered soon")
    })
    .await;
}

/// Reloads `path` until `holds` says its page is as expected (the mailer
/// works beside the request; a page shows its state once it committed).
async fn until(b: &mut Browser, path: &str, holds: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = b.get(path).await;
        if holds(&page.body) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never became as expected: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
