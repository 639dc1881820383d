//! Surveys on real daemons: the vendor surveys a connected partner and a
//! web partner; the connected partner's staff answer from their own node
//! (a signed `survey.answer` over the stream), the web partner's two users
//! in the web view and the API; the results give the expected NPS overall
//! and per partner, the answers count in both nodes' scorecards, a second
//! answer and one after the closing day are refused, an anonymous survey
//! hides its results under three answers, and people who have not
//! answered are reminded before it closes (the clock moved).

use crate::web::{Browser, add_partner_user};
use guanxi_tests::{eventually, expect};
use serde_json::{Value, json};
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");
const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn survey(round: &str, anonymous: bool, partners: &[&str]) -> String {
    json!({
        "survey": {"series": "satisfaction", "round": round, "title_en": format!("Partner satisfaction {round}"),
            "title_zh": format!("合作夥伴滿意度 {round}"), "closes_at": now_ms() + 7 * DAY, "anonymous": anonymous,
            "questions": [
                {"id": "q1", "kind": "nps", "text_en": "How likely are you to recommend us?", "text_zh": "您推薦我們的可能性有多高？", "choices": [], "required": true},
                {"id": "q2", "kind": "rating", "text_en": "How easy is ordering?", "text_zh": "下單容易嗎？", "choices": [], "required": false},
                {"id": "q3", "kind": "single", "text_en": "Main channel?", "text_zh": "主要通路？", "required": false,
                 "choices": [{"id": "c1", "en": "Web", "zh": "網站"}, {"id": "c2", "en": "Phone", "zh": "電話"}]},
                {"id": "q4", "kind": "multiple", "text_en": "What helps?", "text_zh": "哪些有幫助？", "required": false,
                 "choices": [{"id": "c1", "en": "Training", "zh": "訓練"}, {"id": "c2", "en": "Funds", "zh": "基金"}]},
                {"id": "q5", "kind": "text", "text_en": "Anything else?", "text_zh": "還有其他意見嗎？", "choices": [], "required": false}]},
        "target": {"everyone": false, "types": [], "tiers": [], "countries": [], "partners": partners},
    })
    .to_string()
}

#[tokio::test]
async fn partners_answer_surveys_and_the_nps_counts() {
    let bin = Path::new(BIN);
    let pair = guanxi_tests::two_nodes(bin).await;
    let (va, pa, vt, pt) = pair.apis(bin);
    for p in [
        json!({"id": "globex", "name": "Globex", "type": "reseller", "tier": "gold", "country": "TW", "region": "", "stage": "active", "peer": "globex"}),
        json!({"id": "webco", "name": "Webco", "type": "reseller", "tier": "silver", "country": "JP", "region": "", "stage": "active", "peer": null}),
    ] {
        expect(
            &va,
            "post",
            "/api/v1/partners",
            &vt,
            Some(&p.to_string()),
            201,
        )
        .await;
    }
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    let pw = pair.vendor_daemon.first_admin_password().expect("pw");
    assert_eq!(staff.login("admin", &pw).await.status, 303);
    let wen_pw = add_partner_user(&mut staff, "webco", "wen", "Wen").await;
    let wu_pw = add_partner_user(&mut staff, "webco", "wu", "Wu").await;
    let wu = pair.vendor.token(bin, "wu-script", "wu");

    // A survey the wire refuses names the field; one to nobody is refused.
    let mut bad: Value = serde_json::from_str(&survey("Q4", false, &["globex"])).expect("json");
    bad["survey"]["questions"][2]["choices"] = json!([]);
    let v = expect(
        &va,
        "post",
        "/api/v1/surveys",
        &vt,
        Some(&bad.to_string()),
        422,
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("body.questions[2].choices: 2 to 20 choices"),
        "{v}"
    );
    expect(
        &va,
        "post",
        "/api/v1/surveys",
        &vt,
        Some(&survey("Q4", false, &["nobody"])),
        422,
    )
    .await;
    let sent = expect(
        &va,
        "post",
        "/api/v1/surveys",
        &vt,
        Some(&survey("Q4", false, &["globex", "webco"])),
        201,
    )
    .await;
    let id = sent["id"].as_str().expect("id").to_string();
    assert_eq!(
        sent["sent_to"].as_object().map(|m| m.len()),
        Some(2),
        "{sent}"
    );

    // globex's staff answer in their own node.
    let received = eventually("the survey at globex", || async {
        let (_, v) = pa.call("get", "/api/v1/surveys", Some(&pt), None).await;
        v["received"].as_array().and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!(received["answered"], false, "{received}");
    let subject = received["subject"].as_str().expect("subject").to_string();
    let at_globex = format!("/api/v1/surveys/acme/{subject}/answers");
    let wrong = json!({"answers": [{"question": "q1", "score": 11, "choices": [], "text": ""}]});
    let v = expect(&pa, "post", &at_globex, &pt, Some(&wrong.to_string()), 409).await;
    assert!(
        v["message"].as_str().unwrap_or("").contains("does not fit"),
        "{v}"
    );
    let theirs = json!({"answers": [
        {"question": "q1", "score": 10, "choices": [], "text": ""},
        {"question": "q2", "score": 4, "choices": [], "text": ""},
        {"question": "q3", "score": null, "choices": ["c1"], "text": ""}]});
    expect(&pa, "post", &at_globex, &pt, Some(&theirs.to_string()), 200).await;
    expect(&pa, "post", &at_globex, &pt, Some(&theirs.to_string()), 409).await;

    // Wen answers in the web view, Wu through the API.
    let mut wen = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(wen.login("wen", &wen_pw).await.status, 303);
    let list = wen.get("/surveys").await;
    assert!(
        list.body.contains("Partner satisfaction Q4"),
        "{}",
        list.body
    );
    let page = wen.get(&format!("/surveys/web:webco/{subject}")).await;
    assert!(
        page.body.contains("id=\"survey-answer\"") && page.body.contains("Main channel?"),
        "{}",
        page.body
    );
    let answered = wen
        .post(
            &format!("/surveys/web:webco/{subject}"),
            &[
                ("csrf", &Browser::csrf(&page)),
                ("q1", "9"),
                ("q2", "5"),
                ("q3", "c2"),
                ("q4.c1", "yes"),
                ("q4.c2", "yes"),
                ("q5", "Faster replies"),
            ],
        )
        .await;
    assert_eq!(answered.status, 303, "{}", answered.body);
    let again = wen.get(&format!("/surveys/web:webco/{subject}")).await;
    assert!(
        again.body.contains("id=\"survey-answered\""),
        "{}",
        again.body
    );
    let mine = json!({"answers": [{"question": "q1", "score": 3, "choices": [], "text": ""}]});
    let web_answers = format!("/api/v1/surveys/web:webco/{subject}/answers");
    expect(&va, "post", &web_answers, &wu, Some(&mine.to_string()), 200).await;
    expect(
        &va,
        "post",
        &format!("/api/v1/surveys/globex/{subject}/answers"),
        &wu,
        Some(&mine.to_string()),
        403,
    )
    .await;

    // Results: promoters 10 and 9, detractor 3: NPS (2 − 1) × 100 ÷ 3 = 33.
    let results_path = format!("/api/v1/surveys/own/{id}");
    let results = eventually("three answers at acme", || async {
        let (_, v) = va.call("get", &results_path, Some(&vt), None).await;
        (v["results"]["responses"] == 3).then_some(v)
    })
    .await;
    let overall = &results["results"]["overall"];
    assert_eq!(
        (
            overall[0]["nps"].as_i64(),
            overall[1]["mean_x100"].as_i64(),
            overall[3]["counts"]["c1"].as_u64()
        ),
        (Some(33), Some(450), Some(1)),
        "{results}"
    );
    assert_eq!(
        overall[4]["texts"][0],
        json!(["wen", "Faster replies"]),
        "{results}"
    );
    let groups: Vec<(Value, Value)> = results["results"]["by_partner"]
        .as_array()
        .expect("partners")
        .iter()
        .map(|g| (g[0].clone(), g[2][0]["nps"].clone()))
        .collect();
    assert_eq!(
        groups,
        vec![(json!("globex"), json!(100)), (json!("webco"), json!(0))],
        "{results}"
    );
    let page = staff.get(&format!("/surveys/own/{id}")).await;
    assert!(
        page.body.contains("NPS 33") && page.body.contains("4.50 / 5"),
        "{}",
        page.body
    );

    // The answers count in the scorecards, on both of globex's sides.
    let card = expect(
        &va,
        "get",
        "/api/v1/scorecard?partner=webco",
        &vt,
        None,
        200,
    )
    .await;
    assert_eq!(
        (
            card["scorecard"]["survey_answers"].as_u64(),
            card["scorecard"]["nps"].as_i64()
        ),
        (Some(2), Some(0)),
        "{card}"
    );
    let ours = expect(
        &va,
        "get",
        "/api/v1/scorecard?partner=globex",
        &vt,
        None,
        200,
    )
    .await;
    assert_eq!(ours["scorecard"]["nps"], 100, "{ours}");
    let theirs = expect(&pa, "get", "/api/v1/scorecard?vendor=acme", &pt, None, 200).await;
    assert_eq!(theirs["scorecard"], ours["scorecard"], "both nodes agree");

    // The other way round: globex surveys its vendor, whose staff answer.
    let back = expect(
        &pa,
        "post",
        "/api/v1/surveys",
        &pt,
        Some(&survey("V1", false, &["acme"])),
        201,
    )
    .await;
    assert_eq!(back["sent_to"], json!({"acme": "acme"}), "{back}");
    let theirs = eventually("globex's survey at acme", || async {
        let (_, v) = va.call("get", "/api/v1/surveys", Some(&vt), None).await;
        v["received"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["surveyor"] == "globex").cloned())
    })
    .await;
    let answer = json!({"answers": [{"question": "q1", "score": 6, "choices": [], "text": ""}]});
    expect(
        &va,
        "post",
        &format!(
            "/api/v1/surveys/globex/{}/answers",
            theirs["subject"].as_str().expect("subject")
        ),
        &vt,
        Some(&answer.to_string()),
        200,
    )
    .await;
    let back_results = format!("/api/v1/surveys/own/{}", back["id"].as_str().expect("id"));
    let got = eventually("acme's answer at globex", || async {
        let (_, v) = pa.call("get", &back_results, Some(&pt), None).await;
        (v["results"]["responses"] == 1).then_some(v)
    })
    .await;
    assert_eq!(
        got["results"]["overall"][0]["nps"], -100,
        "a detractor: {got}"
    );

    // An anonymous round to webco: no names, no results under three.
    let anon = expect(
        &va,
        "post",
        "/api/v1/surveys",
        &vt,
        Some(&survey("Q1", true, &["webco"])),
        201,
    )
    .await;
    let anon_id = anon["id"].as_str().expect("id").to_string();
    let anon_subject = format!("survey.acme.{anon_id}");
    let page = wen.get(&format!("/surveys/web:webco/{anon_subject}")).await;
    let answered = wen
        .post(
            &format!("/surveys/web:webco/{anon_subject}"),
            &[("csrf", &Browser::csrf(&page)), ("q1", "8"), ("q5", "Fine")],
        )
        .await;
    assert_eq!(answered.status, 303, "{}", answered.body);
    let anon_results = expect(
        &va,
        "get",
        &format!("/api/v1/surveys/own/{anon_id}"),
        &vt,
        None,
        200,
    )
    .await;
    assert!(
        anon_results["results"]["responses"] == 1 && anon_results["results"]["overall"].is_null(),
        "{anon_results}"
    );
    assert!(
        !anon_results.to_string().contains("wen"),
        "no names: {anon_results}"
    );
    let page = staff.get(&format!("/surveys/own/{anon_id}")).await;
    assert!(page.body.contains("id=\"survey-hidden\""), "{}", page.body);
    // The series' rounds, in order.
    assert_eq!(
        anon_results["trend"],
        json!([["Q4", 3, 33], ["Q1", 1, null]]),
        "{anon_results}"
    );

    // Five and a half days on, Wu (who has not answered the anonymous
    // round) is reminded; Wen (who has) is not.
    pair.vendor.set_clock_offset(5 * DAY + 12 * 3_600_000);
    let mut wu_web = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(wu_web.login("wu", &wu_pw).await.status, 303);
    let reminder = "is waiting for your answers to a survey";
    eventually("Wu's reminder", || {
        let mut wu_web = wu_web.clone();
        async move {
            let page = wu_web.get("/notifications").await;
            page.body.contains(reminder).then_some(())
        }
    })
    .await;
    let mut wen = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(wen.login("wen", &wen_pw).await.status, 303);
    let notes = wen.get("/notifications").await;
    assert!(
        notes.body.contains("asks you to answer a survey") && !notes.body.contains(reminder),
        "{}",
        notes.body
    );
    // After the closing day nobody can answer.
    pair.vendor.set_clock_offset(8 * DAY);
    let late = json!({"answers": [{"question": "q1", "score": 7, "choices": [], "text": ""}]});
    let v = expect(
        &va,
        "post",
        &format!("/api/v1/surveys/web:webco/{anon_subject}/answers"),
        &wu,
        Some(&late.to_string()),
        409,
    )
    .await;
    assert!(
        v["message"].as_str().unwrap_or("").contains("closed"),
        "{v}"
    );

    // In Chinese, for the staff and for the partner.
    let mut staff = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(staff.login("admin", &pw).await.status, 303);
    crate::web::all_in_chinese(
        &mut staff,
        &["/surveys", "/surveys/new", &format!("/surveys/own/{id}")],
    )
    .await;
    let mut wen = Browser::new(&pair.vendor, &pair.vendor_daemon);
    assert_eq!(wen.login("wen", &wen_pw).await.status, 303);
    crate::web::all_in_chinese(
        &mut wen,
        &["/surveys", &format!("/surveys/web:webco/{subject}")],
    )
    .await;
}
