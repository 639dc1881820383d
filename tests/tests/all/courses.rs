//! Training on real daemons: the vendor publishes a course (lessons and a
//! quiz drawn from a pool) to a connected partner's node and to its web
//! partners. A web partner's user fails once and then passes in the
//! vendor's web view; a connected partner's person passes in their own
//! node, whose answers travel as a signed `quiz.submit` and come back
//! graded with the certification. Both certifications verify offline with
//! `guanxi cert verify` and with the Python checker, a tampered one fails,
//! and once expired a certification no longer counts toward the tier
//! requirement shown on the partner's page.

use crate::web::{Browser, Page, add_partner_user, all_in_chinese};
use guanxi_tests::{eventually, expect, run};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

const DAY: i64 = 86_400_000;

/// The question pool as staff type it, and the right choice of each
/// question (by its number, `q1`…).
const QUESTIONS: &str = "How often is the spindle greased?
- Never
* Every 500 hours
- Every day

Which tools does a tool change need?
* A torque wrench
* The holder key
- A hammer

What does the red light mean?
- Ready
* Emergency stop
- Warming up

Where is the coolant filter?
- Under the roof
* Behind the left panel";

fn right_answers() -> HashMap<&'static str, Vec<usize>> {
    HashMap::from([
        ("q1", vec![1]),
        ("q2", vec![0, 1]),
        ("q3", vec![1]),
        ("q4", vec![1]),
    ])
}

fn partner(id: &str, peer: Option<&str>) -> String {
    json!({"id": id, "name": format!("{id} Ltd"), "type": "reseller", "tier": "gold", "country": "TW", "region": "",
           "stage": "active", "peer": peer})
    .to_string()
}

fn link(body: &str, prefix: &str) -> Option<String> {
    let at = body.find(&format!("href=\"{prefix}"))? + 6;
    body[at..].split('"').next().map(str::to_string)
}

/// The value of the hidden input `name` on a page.
fn hidden(page: &Page, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.body.find(&marker).expect("hidden input") + marker.len();
    page.body[at..]
        .split('"')
        .next()
        .expect("value")
        .to_string()
}

/// Answers the quiz on `page` (right when `right`, else every answer
/// wrong) and submits it; returns the attempt's page.
async fn answer(b: &mut Browser, action: &str, page: &Page, right: bool) -> String {
    let key = right_answers();
    let mut fields: Vec<(String, String)> = vec![
        ("csrf".into(), Browser::csrf(page)),
        ("attempt".into(), hidden(page, "attempt")),
    ];
    let mut drawn = 0;
    for (q, choices) in &key {
        if !page.body.contains(&format!("id=\"question-{q}\"")) {
            continue;
        }
        drawn += 1;
        let multiple = choices.len() > 1;
        let chosen: Vec<usize> = if right {
            choices.clone()
        } else {
            vec![if choices.contains(&0) { 2 } else { 0 }]
        };
        for c in chosen {
            if multiple {
                fields.push((format!("a.{q}.{c}"), "on".into()));
            } else {
                fields.push((format!("a.{q}"), c.to_string()));
            }
        }
    }
    assert_eq!(drawn, 3, "three questions are drawn: {}", page.body);
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let sent = b.post(action, &pairs).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    sent.location.expect("the attempt's page")
}

/// Verifies a certification file with the CLI and the Python checker.
fn verified(dir: &Path, file: &Path, key: &str) -> (bool, bool, String) {
    let (code, out, err) = run(
        Path::new(BIN),
        dir,
        &[
            "cert",
            "verify",
            file.to_str().expect("utf-8"),
            "--key",
            key,
        ],
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/testdata/verify_vectors.py");
    let python = std::process::Command::new("python3")
        .arg(&script)
        .arg("--certification")
        .arg(file)
        .arg(key)
        .output()
        .expect("python3 runs");
    (
        code == Some(0),
        python.status.success(),
        format!(
            "{out}{err}{}{}",
            String::from_utf8_lossy(&python.stdout),
            String::from_utf8_lossy(&python.stderr)
        ),
    )
}

#[tokio::test]
async fn partners_pass_a_course_and_hold_signed_certifications() {
    let bin = Path::new(BIN);
    let pair = guanxi_tests::two_nodes(bin).await;
    let (av, _, tv, _) = pair.apis(bin);
    for p in [partner("globex", Some("globex")), partner("webco", None)] {
        expect(&av, "post", "/api/v1/partners", &tv, Some(&p), 201).await;
    }
    let vendor_pw = pair.vendor_daemon.first_admin_password().expect("pw");
    let partner_pw = pair.partner_daemon.first_admin_password().expect("pw");
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(staff.login("admin", &vendor_pw).await.status, 303);
    let webco_pw = add_partner_user(&mut staff, "webco", "wen", "Wen Chen").await;

    // A course: two lessons, four questions of which three are drawn,
    // 60 % to pass, three attempts, certifications valid 30 days.
    let form = staff.get("/library/new").await;
    let csrf = Browser::csrf(&form);
    let lessons =
        "# Daily care\nWipe the **rails** every day.\n\n# Tool change\nUse the holder key.";
    let fields = [
        ("csrf", csrf.as_str()),
        ("title", "CNC basics"),
        ("summary", "Care and safety of the CNC-5X"),
        ("language", "en"),
        ("format", "course"),
        ("code", "cnc-basics"),
        ("level", "basic"),
        ("valid_days", "30"),
        ("lessons", lessons),
        ("questions", QUESTIONS),
        ("draw", "3"),
        ("pass_percent", "60"),
        ("attempts", "3"),
        ("everyone", "yes"),
    ];
    // A pool with a question lacking its right choice is refused, naming
    // the line.
    let broken = QUESTIONS.replace("* Emergency stop", "- Emergency stop");
    let mut bad_fields = fields.to_vec();
    bad_fields.retain(|(k, _)| *k != "questions");
    bad_fields.push(("questions", &broken));
    let refused = staff.post_multipart("/library/new", &bad_fields, &[]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("questions: line 11"),
        "{}",
        refused.body
    );
    let published = staff.post_multipart("/library/new", &fields, &[]).await;
    assert_eq!(published.status, 303, "{}", published.body);
    let course = published.location.clone().expect("location");
    // Personalised training: the course is assigned to Wen at webco, and to
    // globex (anyone there), due 20 December.
    let page = staff.get(&course).await;
    let csrf = Browser::csrf(&page);
    let assign = |partner: &'static str, person: &'static str| {
        let (mut staff, course, csrf) = (staff.clone(), course.clone(), csrf.clone());
        async move {
            staff
                .post_multipart(
                    &course,
                    &[
                        ("csrf", &csrf),
                        ("action", "assign"),
                        ("partner", partner),
                        ("person", person),
                        ("due", "2026-12-20"),
                    ],
                    &[],
                )
                .await
        }
    };
    let unknown = assign("nobody", "").await;
    assert!(
        unknown.status == 422 && unknown.body.contains("partner:"),
        "{}",
        unknown.body
    );
    assert_eq!(assign("webco", "Wen Chen").await.status, 303);
    assert_eq!(assign("globex", "").await.status, 303);

    // The web partner's user reads the lessons, fails once, then passes.
    let mut wen = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(wen.login("wen", &webco_pw).await.status, 303);
    let page = wen.get(&course).await;
    assert!(
        page.body.contains("<strong>rails</strong>") && page.body.contains("id=\"take-quiz\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Assigned to Wen Chen · Due 2026-12-20"),
        "{}",
        page.body
    );
    let quiz_path = format!("{course}/quiz");
    let quiz = wen.get(&quiz_path).await;
    assert!(
        !quiz.body.contains("* Every"),
        "the answer key is not shown"
    );
    let failed = answer(&mut wen, &quiz_path, &quiz, false).await;
    let shown = wen.get(&failed).await;
    assert!(
        shown.body.contains("Failed")
            && shown.body.contains("0 / 3")
            && shown.body.contains("id=\"retry\""),
        "{}",
        shown.body
    );
    // The same attempt cannot be sent again.
    let again = wen
        .post(
            &quiz_path,
            &[
                ("csrf", &Browser::csrf(&quiz)),
                ("attempt", &hidden(&quiz, "attempt")),
            ],
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    let quiz = wen.get(&quiz_path).await;
    let passed = answer(&mut wen, &quiz_path, &quiz, true).await;
    let shown = wen.get(&passed).await;
    assert!(
        shown.body.contains("Passed") && shown.body.contains("3 / 3"),
        "{}",
        shown.body
    );
    let certificate = link(&shown.body, "/certifications/C").expect("certificate link");
    let printable = wen.get(&certificate).await;
    assert!(
        printable.body.contains("id=\"certificate\"")
            && printable.body.contains("Wen Chen")
            && printable.body.contains("CNC basics"),
        "{}",
        printable.body
    );
    let web_cert = wen.get(&format!("{certificate}/json")).await;
    assert_eq!(web_cert.status, 200);
    // The API gives Wen's organization its certification, the same bytes.
    let wen_token = pair.vendor.token(bin, "wen-script", "wen");
    let listed = expect(&av, "get", "/api/v1/certifications", &wen_token, None, 200).await;
    let document = listed["certifications"][0]["document"]
        .as_str()
        .expect("a certification")
        .to_string();
    let (status, body) = av.call("get", &document, Some(&wen_token), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body.to_string(),
        web_cert.body.trim_end(),
        "the same document"
    );

    // Globex's person takes the course in globex's own node.
    let mut theirs = Browser::new(&pair.partner, &pair.partner_daemon);
    assert_eq!(theirs.login("admin", &partner_pw).await.status, 303);
    let at_partner = eventually("the course at globex", || {
        let mut theirs = theirs.clone();
        async move {
            let list = theirs.get("/library?shelf=received").await;
            link(&list.body, "/library/acme/")
        }
    })
    .await;
    let page = eventually("globex's copy with its assignment", || {
        let (mut theirs, at_partner) = (theirs.clone(), at_partner.clone());
        async move {
            let page = theirs.get(&at_partner).await;
            page.body
                .contains("Assigned to your organization · Due 2026-12-20")
                .then_some(page)
        }
    })
    .await;
    assert!(page.body.contains("Tool change"), "{}", page.body);
    let quiz_path = format!("{at_partner}/quiz");
    let quiz = theirs.get(&quiz_path).await;
    let attempt = answer(&mut theirs, &quiz_path, &quiz, true).await;
    let graded = eventually("the grade from acme", || {
        let mut theirs = theirs.clone();
        let attempt = attempt.clone();
        async move {
            let page = theirs.get(&attempt).await;
            page.body.contains("Passed").then_some(page)
        }
    })
    .await;
    let their_cert = link(&graded.body, "/certifications/C").expect("certificate link");
    let partner_cert = theirs.get(&format!("{their_cert}/json")).await;
    assert_eq!(partner_cert.status, 200);

    // Both verify offline with acme's key; a tampered one does not.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = pair.vendor.public_key.clone();
    for (name, doc) in [
        ("web.json", &web_cert.body),
        ("node.json", &partner_cert.body),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, doc).expect("write");
        let (cli, python, out) = verified(dir.path(), &file, &key);
        assert!(cli && python, "{name}: {out}");
    }
    assert!(partner_cert.body.contains("\"organization\":\"globex\""));
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, web_cert.body.replace("Wen Chen", "Wen Chan")).expect("write");
    let (cli, python, out) = verified(dir.path(), &tampered, &key);
    assert!(!cli && !python, "a tampered certification fails: {out}");

    // Support cites the library: Wen asks about the course's lesson and
    // cites it; staff answer citing it too; globex's staff cite the course
    // as their node received it. The partner's page lists what is open.
    let course_id = course.trim_start_matches("/library/own/").to_string();
    let csrf = Browser::csrf(&wen.get("/service").await);
    let unknown = wen
        .post(
            "/service",
            &[
                ("csrf", &csrf),
                ("vendor", "acme"),
                ("company", "Contoso"),
                ("sku", "CNC-5X"),
                ("problem", "The spindle squeaks after greasing"),
                ("priority", "normal"),
                ("resource", "own|Rnosuchresource0"),
            ],
        )
        .await;
    assert!(
        unknown.status == 422 && unknown.body.contains("resource:"),
        "{}",
        unknown.body
    );
    let opened = wen
        .post(
            "/service",
            &[
                ("csrf", &csrf),
                ("vendor", "acme"),
                ("company", "Contoso"),
                ("sku", "CNC-5X"),
                ("problem", "The spindle squeaks after greasing"),
                ("priority", "normal"),
                ("resource", &format!("own|{course_id}")),
            ],
        )
        .await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    let request = opened.location.expect("the request");
    let shown = staff.get(&request).await;
    assert!(
        shown
            .body
            .contains(&format!("href=\"{course}\" class=\"cited\">CNC basics")),
        "{}",
        shown.body
    );
    let answered = staff
        .post_multipart(
            &request,
            &[
                ("csrf", &Browser::csrf(&shown)),
                ("status", "in_progress"),
                ("comment", ""),
                ("resource", &format!("own|{course_id}")),
            ],
            &[],
        )
        .await;
    assert_eq!(answered.status, 303, "{}", answered.body);
    assert_eq!(
        wen.get(&request)
            .await
            .body
            .matches("class=\"cited\"")
            .count(),
        2,
        "the partner sees both citations"
    );
    let place = format!("acme|{}", at_partner.trim_start_matches("/library/acme/"));
    let theirs_form = theirs.get("/service").await;
    assert!(
        theirs_form.body.contains("CNC basics"),
        "{}",
        theirs_form.body
    );
    let from_node = theirs
        .post(
            "/service",
            &[
                ("csrf", &Browser::csrf(&theirs_form)),
                ("vendor", "acme"),
                ("company", "Initech"),
                ("sku", "CNC-5X"),
                ("problem", "Which grease does lesson 1 mean?"),
                ("priority", "low"),
                ("resource", &place),
            ],
        )
        .await;
    assert_eq!(from_node.status, 303, "{}", from_node.body);
    let support = eventually("globex's request at acme", || {
        let mut staff = staff.clone();
        async move {
            let page = staff.get("/partners/globex").await;
            page.body.contains("Initech · CNC-5X").then_some(page)
        }
    })
    .await;
    let at_acme = link(&support.body, "/service/globex/").expect("the request");
    let shown = staff.get(&at_acme).await;
    assert!(
        shown
            .body
            .contains(&format!("href=\"{course}\" class=\"cited\"")),
        "acme resolves the citation to its own course: {}",
        shown.body
    );
    let webco = staff.get("/partners/webco").await;
    assert!(webco.body.contains("Contoso · CNC-5X"), "{}", webco.body);

    // Gold needs two certified people: webco has one, globex one.
    let form = staff.get("/certifications/requirements").await;
    let set = staff
        .post(
            "/certifications/requirements",
            &[
                ("csrf", &Browser::csrf(&form)),
                ("requirements", "gold cnc-basics 2"),
            ],
        )
        .await;
    assert_eq!(set.status, 303, "{}", set.body);
    let webco = staff.get("/partners/webco").await;
    assert!(
        webco.body.contains("cnc-basics: 1 / 2") && webco.body.contains("Wen Chen"),
        "{}",
        webco.body
    );
    assert!(
        webco.body.contains("Due 2026-12-20 — passed by Wen Chen"),
        "{}",
        webco.body
    );
    let globex = eventually("globex's certification at acme", || {
        let mut staff = staff.clone();
        async move {
            let page = staff.get("/partners/globex").await;
            page.body.contains("cnc-basics: 1 / 2").then_some(page)
        }
    })
    .await;
    assert!(globex.body.contains("lacks 1"), "{}", globex.body);
    // Three weeks on, Wen is reminded to renew.
    pair.vendor.set_clock_offset(23 * DAY);
    assert_eq!(wen.login("wen", &webco_pw).await.status, 303);
    eventually("a renewal reminder for Wen", || {
        let mut wen = wen.clone();
        async move {
            let page = wen.get("/notifications").await;
            page.body
                .contains("The certification of Wen Chen expires soon")
                .then_some(())
        }
    })
    .await;
    // A month later the certifications have expired and count no more.
    pair.vendor.set_clock_offset(31 * DAY);
    assert_eq!(staff.login("admin", &vendor_pw).await.status, 303);
    let webco = staff.get("/partners/webco").await;
    assert!(
        webco.body.contains("cnc-basics: 0 / 2") && webco.body.contains("Expired"),
        "{}",
        webco.body
    );
    assert_eq!(wen.login("wen", &webco_pw).await.status, 303);
    all_in_chinese(
        &mut wen,
        &[
            &course,
            &quiz_path_of(&course),
            &certificate,
            "/certifications",
        ],
    )
    .await;
}

fn quiz_path_of(course: &str) -> String {
    format!("{course}/quiz")
}
