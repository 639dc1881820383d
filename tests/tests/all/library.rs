//! The shared library on real daemons: a manufacturer publishes a video to
//! a distributor's node and to the web partners its target covers; the
//! distributor's node fetches the bytes with a signed request and passes
//! the video on to a reseller's node and its own web partner, keeping the
//! manufacturer as origin; partners outside the target see nothing (web
//! pages, search, downloads, and a federation fetch signed with a
//! configured peer's key are all refused); a withdrawal reaches everyone.

use crate::web::{Browser, add_partner_user, all_in_chinese};
use guanxi_protocol::fetch::FetchFields;
use guanxi_protocol::{NodeKey, Sha256Hash};
use guanxi_tests::{Api, NodeSetup, eventually, expect};
use serde_json::json;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

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

async fn signed_in(
    node: &NodeSetup,
    daemon: &guanxi_tests::Daemon,
    user: &str,
    password: &str,
) -> Browser {
    let mut b = Browser::new(node, daemon);
    let page = b.login(user, password).await;
    assert_eq!(page.status, 303, "{}", page.body);
    b
}

#[tokio::test]
async fn a_resource_travels_down_the_chain_and_only_to_its_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, daemons) =
        guanxi_tests::chain_of_three(Path::new(BIN), dir.path(), ["mfr", "dist", "res"]).await;
    let (mfr, dist, res) = (&nodes[0], &nodes[1], &nodes[2]);
    let (dm, dd, dr) = (&daemons[0], &daemons[1], &daemons[2]);
    // A peer of the manufacturer that no resource targets, whose key the
    // test holds.
    let other = NodeKey::from_seed(&[9u8; 32]);
    mfr.append_config(&format!(
        "\n[[peers]]\nid = \"other\"\nurl = \"https://127.0.0.1:9\"\nenabled = true\n[[peers.keys]]\npublic_key = \"{}\"\n",
        guanxi_protocol::crypto::b64url(&other.public().to_bytes())
    ))
    .expect("config");
    mfr.point_at(dist).await;
    let (am, ad) = (Api::of(mfr, dm), Api::of(dist, dd));
    let (tm, td) = (
        mfr.token(Path::new(BIN), "ci", "admin"),
        dist.token(Path::new(BIN), "ci", "admin"),
    );
    for p in [
        partner("dist", "distributor", "TW", Some("dist")),
        partner("webco", "reseller", "TW", None),
        partner("farco", "agent", "JP", None),
    ] {
        expect(&am, "post", "/api/v1/partners", &tm, Some(&p), 201).await;
    }
    for p in [
        partner("res", "reseller", "TW", Some("res")),
        partner("shopco", "reseller", "TW", None),
    ] {
        expect(&ad, "post", "/api/v1/partners", &td, Some(&p), 201).await;
    }
    let mut sm = signed_in(mfr, dm, "admin", &dm.first_admin_password().expect("pw")).await;
    let mut sd = signed_in(dist, dd, "admin", &dd.first_admin_password().expect("pw")).await;
    let mut sr = signed_in(res, dr, "admin", &dr.first_admin_password().expect("pw")).await;
    let webco_pw = add_partner_user(&mut sm, "webco", "wen", "Wen").await;
    let farco_pw = add_partner_user(&mut sm, "farco", "fumi", "Fumi").await;
    let shopco_pw = add_partner_user(&mut sd, "shopco", "shu", "Shu").await;

    // The manufacturer publishes a 3 MiB "video" to distributors and
    // resellers in Taiwan.
    let video: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| b"CNC5X-demo "[(i % 11) as usize])
        .collect();
    let sha = Sha256Hash::of(&video).to_string();
    let form = sm.get("/library/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = Browser::csrf(&form);
    let published = sm
        .post_multipart(
            "/library/new",
            &[
                ("csrf", &csrf),
                ("title", "CNC-5X spindle maintenance video"),
                ("summary", "How to service the spindle"),
                ("folder", "Service"),
                ("tags", "cnc, spindle, 保養"),
                ("language", "en"),
                ("format", "file"),
                ("types", "distributor, reseller"),
                ("countries", "TW"),
            ],
            &[("spindle.mp4", "video/mp4", &video)],
        )
        .await;
    assert_eq!(published.status, 303, "{}", published.body);
    let own = published.location.clone().expect("location");
    let id = own.trim_start_matches("/library/own/").to_string();
    let shown = sm.get(&own).await;
    assert!(
        shown.body.contains("spindle.mp4") && shown.body.contains("3 MiB"),
        "{}",
        shown.body
    );

    // The distributor's node receives it and fetches the bytes.
    let at_dist = eventually("the video at dist, fetched", || {
        let mut sd = sd.clone();
        async move {
            let list = sd.get("/library?shelf=received").await;
            let page = link(&list.body, "/library/mfr/")?;
            let item = sd.get(&page).await;
            item.body.contains("id=\"download\"").then_some(page)
        }
    })
    .await;
    let got = sd.get(&format!("{at_dist}/file/{sha}")).await;
    assert_eq!(got.status, 200);
    assert!(
        got.body.as_bytes() == video.as_slice(),
        "the bytes arrived whole"
    );

    // Partners the target covers see it, find it, download it (by range
    // too); the one outside sees nothing of it anywhere.
    let mut wen = signed_in(mfr, dm, "wen", &webco_pw).await;
    let list = wen.get("/library").await;
    assert!(
        list.body.contains("CNC-5X spindle maintenance video"),
        "{}",
        list.body
    );
    let found = wen.get("/library?q=spindle+video").await;
    assert!(found.body.contains(&own), "{}", found.body);
    let found = wen.get("/library?q=%E4%BF%9D%E9%A4%8A").await;
    assert!(
        found.body.contains(&own),
        "Chinese tag found: {}",
        found.body
    );
    let part = wen
        .get_range(&format!("{own}/file/{sha}"), "bytes=11-21")
        .await;
    assert_eq!((part.status, part.body.as_str()), (206, "CNC5X-demo "));
    let mut fumi = signed_in(mfr, dm, "fumi", &farco_pw).await;
    let list = fumi.get("/library").await;
    assert!(!list.body.contains("spindle"), "{}", list.body);
    assert!(list.body.contains("id=\"library-empty\""), "{}", list.body);
    assert!(!fumi.get("/library?q=spindle").await.body.contains(&own));
    assert_eq!(fumi.get(&own).await.status, 404);
    assert_eq!(fumi.get(&format!("{own}/file/{sha}")).await.status, 404);
    assert_eq!(fumi.get("/library/new").await.status, 403);
    // The JSON API answers the same to each partner's token.
    let (wen_token, fumi_token) = (
        mfr.token(Path::new(BIN), "wen-script", "wen"),
        mfr.token(Path::new(BIN), "fumi-script", "fumi"),
    );
    let listed = expect(
        &am,
        "get",
        "/api/v1/library?q=spindle",
        &wen_token,
        None,
        200,
    )
    .await;
    assert_eq!(listed["resources"][0]["subject"], id.as_str(), "{listed}");
    let one = format!("/api/v1/library/own/{id}");
    let shown = expect(&am, "get", &one, &wen_token, None, 200).await;
    assert_eq!(shown["resource"]["file"]["sha256"], sha.as_str(), "{shown}");
    let listed = expect(&am, "get", "/api/v1/library", &fumi_token, None, 200).await;
    assert_eq!(listed["resources"], json!([]), "{listed}");
    let searched = expect(
        &am,
        "get",
        "/api/v1/library?q=spindle",
        &fumi_token,
        None,
        200,
    )
    .await;
    assert_eq!(searched["resources"], json!([]), "{searched}");
    expect(&am, "get", &one, &fumi_token, None, 404).await;
    expect(
        &am,
        "get",
        &format!("{one}/file/{sha}"),
        &fumi_token,
        None,
        404,
    )
    .await;

    // A federation fetch: unsigned, signed by a peer nothing targets, and
    // stale are all refused.
    let client =
        guanxi_tests::client_trusting(&guanxi_tests::cert_in(&mfr.data_dir())).expect("client");
    let url = format!("{}/fed/v1/files/{sha}", dm.url());
    let r = client.get(&url).send().await.expect("fetch");
    assert_eq!(r.status().as_u16(), 400);
    let now = jiff::Timestamp::now().as_millisecond();
    let fetch = |at: i64| {
        FetchFields {
            v: 1,
            from: "other".parse().expect("id"),
            to: "mfr".parse().expect("id"),
            sha256: sha.clone(),
            at,
        }
        .sign(&other)
        .expect("signs")
    };
    let r = client
        .get(&url)
        .header("guanxi-fetch", fetch(now))
        .send()
        .await
        .expect("fetch");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    assert_eq!(
        status,
        404,
        "not a recipient: {}",
        &body[..body.len().min(300)]
    );
    assert!(body.contains("unknown_record"), "{body}");
    let r = client
        .get(&url)
        .header("guanxi-fetch", fetch(now - 3_600_000))
        .send()
        .await
        .expect("fetch");
    assert_eq!(r.status().as_u16(), 401, "a replayed request");

    // The distributor passes it on to everyone in its directory.
    let page = sd.get(&at_dist).await;
    let csrf = Browser::csrf(&page);
    let passed = sd
        .post_multipart(
            &at_dist,
            &[("csrf", &csrf), ("action", "pass_on"), ("everyone", "yes")],
            &[],
        )
        .await;
    assert_eq!(passed.status, 303, "{}", passed.body);
    let dist_own = passed.location.clone().expect("location");
    let at_res = eventually("the video at res, fetched from dist", || {
        let mut sr = sr.clone();
        async move {
            let list = sr.get("/library?shelf=received").await;
            let page = link(&list.body, "/library/dist/")?;
            let item = sr.get(&page).await;
            item.body
                .contains("id=\"download\"")
                .then_some((page, item.body))
        }
    })
    .await;
    let (res_page, res_body) = at_res;
    assert!(
        res_body.contains("id=\"origin\"") && res_body.contains("mfr"),
        "the manufacturer stays the origin: {res_body}"
    );
    let got = sr.get(&format!("{res_page}/file/{sha}")).await;
    assert!(got.body.as_bytes() == video.as_slice());
    let mut shu = signed_in(dist, dd, "shu", &shopco_pw).await;
    let list = shu.get("/library").await;
    assert!(
        list.body.contains(&dist_own) && list.body.contains("mfr"),
        "{}",
        list.body
    );
    let mine = shu.get(&dist_own).await;
    assert!(mine.body.contains("id=\"origin\""), "{}", mine.body);

    // The library reads in Chinese.
    all_in_chinese(&mut wen, &["/library", &own]).await;
    all_in_chinese(
        &mut sd,
        &[
            "/library",
            "/library?shelf=received",
            "/library/new",
            &at_dist,
            &dist_own,
        ],
    )
    .await;

    // The manufacturer withdraws it: the distributor's copy says so, and
    // the web partner no longer sees it.
    let page = sm.get(&own).await;
    let csrf = Browser::csrf(&page);
    let done = sm
        .post_multipart(
            &own,
            &[
                ("csrf", &csrf),
                ("action", "withdraw"),
                ("confirm", "yes"),
                ("note", "outdated"),
            ],
            &[],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    eventually("withdrawn at dist", || {
        let mut sd = sd.clone();
        let at_dist = at_dist.clone();
        async move {
            let item = sd.get(&at_dist).await;
            (item.body.contains("id=\"withdrawn\"") && item.body.contains("outdated")).then_some(())
        }
    })
    .await;
    assert_eq!(wen.get(&own).await.status, 404);
    let r = client
        .get(&url)
        .header(
            "guanxi-fetch",
            fetch(jiff::Timestamp::now().as_millisecond()),
        )
        .send()
        .await
        .expect("fetch");
    assert_eq!(r.status().as_u16(), 404);
    let _ = id;
}
