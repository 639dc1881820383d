//! Choosing partners on a real daemon: the public application page (no
//! account; CSRF, a field only bots fill, a minimum time to fill it in,
//! five an hour from one address), then staff evaluate an application
//! with the due-diligence checklist and the weighted fit score and approve
//! it — a directory entry at stage onboarding and a first web user whose
//! one-time password opens the portal — or decline another with a reason.

use crate::web::Browser;
use guanxi_tests::Pair;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

fn fields<'a>(csrf: &'a str, company: &'a str, email: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("company", company),
        ("contact", "Lin Mei"),
        ("email", email),
        ("phone", "+886 2 1234 5678"),
        ("country", "tw"),
        ("region", "Taipei"),
        ("website", "https://contoso.example"),
        ("territory", "Northern Taiwan"),
        ("capabilities", "Five engineers, a showroom"),
        ("references", "Fabrikam"),
        ("homepage", ""),
    ]
}

/// Shows the form, moves the node's clock past the minimum fill time, and
/// sends it: the answer's status and body.
async fn send(
    pair: &Pair,
    b: &mut Browser,
    clock: &mut i64,
    company: &str,
    email: &str,
) -> (u16, String) {
    let form = b.get("/apply").await;
    let csrf = Browser::csrf(&form);
    *clock += 5_000;
    pair.vendor.set_clock_offset(*clock);
    let sent = b.post("/apply", &fields(&csrf, company, email)).await;
    (sent.status, sent.body)
}

#[tokio::test]
async fn an_application_becomes_a_partner_with_a_user() {
    let bin = Path::new(BIN);
    let pair = guanxi_tests::two_nodes(bin).await;
    let mut clock = 0;
    let mut public = Browser::new(&pair.vendor, &pair.vendor_daemon);

    // Sent at once, or with the hidden field filled: refused as a bot's.
    let form = public.get("/apply").await;
    assert!(form.body.contains("id=\"apply-form\""), "{}", form.body);
    let csrf = Browser::csrf(&form);
    let fast = public
        .post("/apply", &fields(&csrf, "Contoso", "lin@contoso.example"))
        .await;
    assert!(
        fast.status == 422 && fast.body.contains("too fast"),
        "{}",
        fast.body
    );
    let form = public.get("/apply").await;
    let csrf = Browser::csrf(&form);
    clock += 5_000;
    pair.vendor.set_clock_offset(clock);
    let mut bot = fields(&csrf, "Spam", "x@spam.example");
    bot.retain(|(k, _)| *k != "homepage");
    bot.push(("homepage", "https://spam.example"));
    let trapped = public.post("/apply", &bot).await;
    assert_eq!(trapped.status, 422, "{}", trapped.body);
    let forged = public
        .post(
            "/apply",
            &fields("forged", "Contoso", "lin@contoso.example"),
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let (status, body) = send(&pair, &mut public, &mut clock, "Contoso", "no address").await;
    assert!(
        status == 422 && body.contains("an email address is needed"),
        "{body}"
    );

    // Five from one address in an hour, not six.
    let (status, body) = send(
        &pair,
        &mut public,
        &mut clock,
        "Contoso Taiwan",
        "lin@contoso.example",
    )
    .await;
    assert!(
        status == 200 && body.contains("id=\"apply-done\""),
        "{body}"
    );
    for n in 0..4 {
        let (status, body) = send(
            &pair,
            &mut public,
            &mut clock,
            &format!("Northwind {n}"),
            "a@northwind.example",
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = send(&pair, &mut public, &mut clock, "Too many", "a@b.example").await;
    assert!(
        status == 429 && body.contains("Too many applications"),
        "{body}"
    );

    // Staff set the checklist and the criteria, evaluate and approve.
    let pw = pair.vendor_daemon.first_admin_password().expect("pw");
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(staff.login("admin", &pw).await.status, 303);
    let form = staff.get("/applications/settings").await;
    let bad = staff
        .post(
            "/applications/settings",
            &[
                ("csrf", &Browser::csrf(&form)),
                ("checklist", ""),
                ("criteria", "3 coverage\nmany references"),
            ],
        )
        .await;
    assert!(
        bad.status == 422 && bad.body.contains("line 2"),
        "{}",
        bad.body
    );
    let saved = staff
        .post(
            "/applications/settings",
            &[
                ("csrf", &Browser::csrf(&form)),
                ("checklist", "營業登記\n信用調查"),
                ("criteria", "3 涵蓋範圍\n1 推薦"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let list = staff.get("/applications").await;
    assert_eq!(
        list.body.matches("<tr><th scope=\"row\">").count(),
        5,
        "{}",
        list.body
    );
    let link = list
        .body
        .split("<a href=\"/applications/")
        .find(|part| part.contains(">Contoso Taiwan<"))
        .and_then(|part| part.split('"').next())
        .expect("Contoso's application")
        .to_string();
    let page_path = format!("/applications/{link}");
    let page = staff.get(&page_path).await;
    let evaluated = staff
        .post(
            &page_path,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "evaluate"),
                ("check0", "yes"),
                ("score0", "5"),
                ("score1", "1"),
            ],
        )
        .await;
    assert_eq!(evaluated.status, 303, "{}", evaluated.body);
    let page = staff.get(&page_path).await;
    assert!(
        page.body.contains("<strong>80</strong>")
            && page.body.contains("name=\"check0\" value=\"yes\" checked")
            && page.body.contains("value=\"contoso-taiwan\""),
        "(3 × 5 + 1 × 1) ÷ 20 = 80 %: {}",
        page.body
    );
    let approved = staff
        .post(
            &page_path,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "approve"),
                ("partner", "contoso-taiwan"),
                ("kind", "reseller"),
                ("tier", "gold"),
                ("username", "lin"),
            ],
        )
        .await;
    assert_eq!(approved.status, 201, "{}", approved.body);
    let password = approved
        .body
        .split("id=\"new-password\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the one-time password")
        .to_string();
    let partner = staff.get("/partners/contoso-taiwan").await;
    assert!(
        partner.body.contains("id=\"journey-stage\">Onboarding")
            && partner.body.contains("Lin Mei")
            && partner.body.contains("Northern Taiwan"),
        "{}",
        partner.body
    );
    let again = staff
        .post(
            &page_path,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "decline"),
                ("reason", "late"),
            ],
        )
        .await;
    assert!(
        again.status == 422 && again.body.contains("already approved"),
        "{}",
        again.body
    );
    let mut lin = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(lin.login("lin", &password).await.status, 303);
    assert_eq!(lin.get("/partners/contoso-taiwan").await.status, 200);
    assert_eq!(lin.get("/applications").await.status, 403);

    // Another declined with its reason.
    let other = list
        .body
        .split("<a href=\"/applications/")
        .find(|part| part.contains(">Northwind 0<"))
        .and_then(|part| part.split('"').next())
        .expect("Northwind's application")
        .to_string();
    let other_path = format!("/applications/{other}");
    let page = staff.get(&other_path).await;
    let declined = staff
        .post(
            &other_path,
            &[
                ("csrf", &Browser::csrf(&page)),
                ("action", "decline"),
                ("reason", "區域重疊"),
            ],
        )
        .await;
    assert_eq!(declined.status, 303, "{}", declined.body);
    let page = staff.get(&other_path).await;
    assert!(
        page.body.contains("id=\"application-status\">declined") && page.body.contains("區域重疊"),
        "{}",
        page.body
    );

    let mut public = Browser::new(&pair.vendor, &pair.vendor_daemon);
    crate::web::all_in_chinese(&mut public, &["/apply"]).await;
    crate::web::all_in_chinese(&mut staff, &["/applications/settings"]).await;
}
