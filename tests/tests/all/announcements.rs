//! Announcements on real daemons: the vendor posts one that asks to be
//! acknowledged to a connected partner's node and to the web partners its
//! target covers. The partner's staff read and acknowledge it in their own
//! node (signed `announcement.ack`s), a web partner in the vendor's web
//! view; a partner outside the target never sees it. The vendor sees who
//! read and acknowledged, and each partner's delivery-time figures — the
//! clocks moved so the times are known.

use crate::web::{Browser, add_partner_user, all_in_chinese};
use guanxi_tests::{eventually, expect};
use serde_json::json;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

const HOUR: i64 = 3_600_000;

fn partner(id: &str, kind: &str, country: &str, peer: Option<&str>) -> String {
    json!({"id": id, "name": format!("{id} Ltd"), "type": kind, "tier": "gold", "country": country, "region": "",
           "stage": "active", "peer": peer})
    .to_string()
}

/// The first link on `body` that starts with `prefix`.
fn link(body: &str, prefix: &str) -> Option<String> {
    let at = body.find(&format!("href=\"{prefix}"))? + 6;
    body[at..].split('"').next().map(str::to_string)
}

#[tokio::test]
async fn an_announcement_is_read_and_acknowledged_and_timed() {
    let bin = Path::new(BIN);
    let pair = guanxi_tests::two_nodes(bin).await;
    let (av, _, tv, _) = pair.apis(bin);
    for p in [
        partner("globex", "distributor", "TW", Some("globex")),
        partner("webco", "reseller", "TW", None),
        partner("farco", "agent", "JP", None),
    ] {
        expect(&av, "post", "/api/v1/partners", &tv, Some(&p), 201).await;
    }
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    let vendor_pw = pair.vendor_daemon.first_admin_password().expect("pw");
    assert_eq!(staff.login("admin", &vendor_pw).await.status, 303);
    let mut theirs = Browser::new(&pair.partner, &pair.partner_daemon);
    let partner_pw = pair.partner_daemon.first_admin_password().expect("pw");
    assert_eq!(theirs.login("admin", &partner_pw).await.status, 303);
    let webco_pw = add_partner_user(&mut staff, "webco", "wen", "Wen").await;
    let farco_pw = add_partner_user(&mut staff, "farco", "fumi", "Fumi").await;

    // A partner user cannot post; staff post to Taiwan.
    let mut wen = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(wen.login("wen", &webco_pw).await.status, 303);
    assert_eq!(wen.get("/announcements/new").await.status, 403);
    let form = staff.get("/announcements/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = Browser::csrf(&form);
    let missing = staff
        .post(
            "/announcements/new",
            &[("csrf", &csrf), ("title", "No text"), ("countries", "TW")],
        )
        .await;
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert!(missing.body.contains("body.text"), "{}", missing.body);
    let posted = staff
        .post(
            "/announcements/new",
            &[
                ("csrf", &csrf),
                ("title", "New warranty terms from January"),
                (
                    "text",
                    "Warranty on spindles is **24 months** from January.",
                ),
                ("language", "en"),
                ("requires_ack", "yes"),
                ("countries", "TW"),
            ],
        )
        .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let own = posted.location.clone().expect("location");

    let shown = staff.get(&own).await;
    assert!(shown.body.contains("id=\"waiting\""), "{}", shown.body);
    // Two hours later the partner's staff open it in their own node: read.
    pair.partner.set_clock_offset(2 * HOUR);
    // (Moving a clock by hours ends idle sessions: sign in again.)
    assert_eq!(theirs.login("admin", &partner_pw).await.status, 303);
    let at_partner = eventually("the announcement at globex", || {
        let mut theirs = theirs.clone();
        async move {
            let list = theirs.get("/announcements?shelf=received").await;
            link(&list.body, "/announcements/acme/")
        }
    })
    .await;
    let opened = theirs.get(&at_partner).await;
    assert!(
        opened.body.contains("<strong>24 months</strong>")
            && opened.body.contains("id=\"acknowledge\""),
        "{}",
        opened.body
    );
    // Three hours after posting they acknowledge it.
    pair.partner.set_clock_offset(3 * HOUR);
    assert_eq!(theirs.login("admin", &partner_pw).await.status, 303);
    let opened = theirs.get(&at_partner).await;
    let csrf = Browser::csrf(&opened);
    let acked = theirs.post(&at_partner, &[("csrf", &csrf)]).await;
    assert_eq!(acked.status, 303, "{}", acked.body);
    let after = theirs.get(&at_partner).await;
    assert!(
        after.body.contains("id=\"acknowledged-at\"") && !after.body.contains("id=\"acknowledge\""),
        "{}",
        after.body
    );
    let again = theirs.post(&at_partner, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, 303, "acknowledging twice changes nothing");

    // The web partner in Taiwan sees it, reads it one hour after posting
    // and acknowledges it four hours after; the one in Japan sees nothing.
    pair.vendor.set_clock_offset(HOUR);
    assert_eq!(wen.login("wen", &webco_pw).await.status, 303);
    let list = wen.get("/announcements").await;
    let page = link(&list.body, "/announcements/own/").expect("listed for webco");
    assert_eq!(Some(page.as_str()), Some(own.as_str()));
    assert!(list.body.contains("Unread"), "{}", list.body);
    let opened = wen.get(&page).await;
    assert!(opened.body.contains("24 months"), "{}", opened.body);
    pair.vendor.set_clock_offset(4 * HOUR);
    assert_eq!(wen.login("wen", &webco_pw).await.status, 303);
    let opened = wen.get(&page).await;
    let acked = wen.post(&page, &[("csrf", &Browser::csrf(&opened))]).await;
    assert_eq!(acked.status, 303, "{}", acked.body);
    assert!(
        wen.get("/announcements")
            .await
            .body
            .contains("Acknowledged")
    );
    let mut fumi = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(fumi.login("fumi", &farco_pw).await.status, 303);
    assert!(
        fumi.get("/announcements")
            .await
            .body
            .contains("id=\"announcements-empty\"")
    );
    assert_eq!(fumi.get(&own).await.status, 404);
    let token = Browser::csrf(&fumi.get("/").await);
    assert_eq!(fumi.post(&own, &[("csrf", &token)]).await.status, 404);

    // The vendor sees both, and each partner's figures.
    assert_eq!(staff.login("admin", &vendor_pw).await.status, 303);
    let reached = eventually("both acknowledgements at acme", || {
        let mut staff = staff.clone();
        let own = own.clone();
        async move {
            let page = staff.get(&own).await;
            (page.body.matches("(+").count() == 4).then_some(page)
        }
    })
    .await;
    assert!(
        reached.body.contains("(+2 h)") && reached.body.contains("(+3 h)"),
        "globex read after 2 h, acknowledged after 3 h: {}",
        reached.body
    );
    assert!(
        reached.body.contains("(+1 h)") && reached.body.contains("(+4 h)"),
        "webco read after 1 h, acknowledged after 4 h: {}",
        reached.body
    );
    let globex = staff.get("/partners/globex").await;
    assert!(
        globex
            .body
            .contains("read 1, on average after 2 h; acknowledged 1, on average after 3 h"),
        "{}",
        globex.body
    );
    let webco = staff.get("/partners/webco").await;
    assert!(
        webco
            .body
            .contains("read 1, on average after 1 h; acknowledged 1, on average after 4 h"),
        "{}",
        webco.body
    );
    all_in_chinese(&mut wen, &["/announcements", &own]).await;
    all_in_chinese(&mut staff, &["/announcements", &own, "/announcements/new"]).await;
}
