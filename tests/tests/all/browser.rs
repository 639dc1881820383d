//! The web view in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver with thirtyfour): staff log in,
//! create a partner and a partner user; the partner user logs in, sees only
//! its organization, switches to 中文, and logs out. Then a lead: staff
//! create it, the rules offer it to the partner, whose user accepts and
//! reports it won in the browser; staff see the win in the analysis.

use guanxi_tests::NodeSetup;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thirtyfour::common::capabilities::chromium::ChromiumLikeCapabilities;
use thirtyfour::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_guanxi-test-node");

/// A chromedriver process on a port it picks itself (`--port=0`; it prints
/// the port it bound), killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver is needed (apt-get install chromium chromium-driver): {e}")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                // "ChromeDriver was started successfully on port 36385."
                if let Some(rest) = line.split("successfully on port ").nth(1) {
                    let _ = tx.send(rest.trim_end_matches('.').trim().parse::<u16>().ok());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .expect("chromedriver reports its port");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> WebDriver {
    browser_saving_to(driver, profile, None).await
}

/// A Chromium session; files it downloads go to `downloads` when given.
async fn browser_saving_to(driver: &Driver, profile: &Path, downloads: Option<&Path>) -> WebDriver {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary("/usr/bin/chromium").expect("binary");
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // The daemon's certificate is self-signed; this test is about the pages.
        "--ignore-certificate-errors",
        "--window-size=500,900",
    ] {
        caps.add_arg(arg).expect("arg");
    }
    caps.add_arg(&format!("--user-data-dir={}", profile.display()))
        .expect("arg");
    // A phone 375 px wide (a headless window cannot be narrower than 500
    // px; the emulated screen can): every page must fit it without
    // scrolling sideways.
    caps.add_experimental_option(
        "mobileEmulation",
        serde_json::json!({"deviceMetrics": {"width": 375, "height": 812, "pixelRatio": 2.0}}),
    )
    .expect("mobile emulation");
    if let Some(dir) = downloads {
        caps.add_experimental_option(
            "prefs",
            serde_json::json!({"download.default_directory": dir, "download.prompt_for_download": false}),
        )
        .expect("download directory");
    }
    WebDriver::new(format!("http://127.0.0.1:{}", driver.port), caps)
        .await
        .expect("a Chromium session")
}

async fn fill(page: &WebDriver, name: &str, value: &str) {
    let field = page
        .find(By::Name(name))
        .await
        .unwrap_or_else(|e| panic!("field {name}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn text_of(page: &WebDriver) -> String {
    // The page may be navigating after a click: retry a stale body.
    for _ in 0..50 {
        if let Ok(body) = page.find(By::Tag("body")).await
            && let Ok(text) = body.text().await
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no page body");
}

/// Waits until the page's text contains `needle` (after a click navigates).
async fn wait_text(page: &WebDriver, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = text_of(page).await;
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in; at the first sign-in with a one-time password the daemon asks
/// for the user's own, which is chosen as a person would.
async fn log_in(page: &WebDriver, base: &str, user: &str, password: &str) {
    let password = guanxi_tests::current_password(password);
    page.goto(format!("{base}/login"))
        .await
        .expect("login page");
    fill(page, "username", user).await;
    fill(page, "password", &password).await;
    page.find(By::Id("login"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    let deadline = Instant::now() + Duration::from_secs(15);
    let path = loop {
        let url = page.current_url().await.expect("url");
        if url.path() != "/login" {
            break url.path().to_string();
        }
        assert!(Instant::now() < deadline, "login never left /login");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if path == "/account/password" {
        let chosen = guanxi_tests::choose_password(&password);
        fill(page, "current", &password).await;
        fill(page, "new", &chosen).await;
        fill(page, "confirm", &chosen).await;
        page.find(By::Id("change-password"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
        let deadline = Instant::now() + Duration::from_secs(15);
        while page.current_url().await.expect("url").path() == "/account/password" {
            assert!(
                Instant::now() < deadline,
                "the password change never finished"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Visits each page and checks that it fits the window's width: the page
/// never scrolls sideways (wide tables scroll inside their own box).
async fn fits_the_phone(page: &WebDriver, base: &str, paths: &[&str]) {
    for path in paths {
        page.goto(format!("{base}{path}")).await.expect("page");
        let widths = page
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                Vec::new(),
            )
            .await
            .expect("script")
            .json()
            .clone();
        let (scroll, window) = (widths[0].as_i64(), widths[1].as_i64());
        assert!(
            scroll.is_some() && scroll <= window,
            "{path} scrolls sideways on a phone: {widths}"
        );
    }
}

/// Opens the menu when it is folded (a phone-wide window).
async fn open_menu(page: &WebDriver) {
    let button = page.find(By::Id("menu-button")).await.expect("menu button");
    if button.is_displayed().await.expect("displayed") {
        button.click().await.expect("open the menu");
    }
}

async fn log_out(page: &WebDriver) {
    open_menu(page).await;
    page.find(By::Css("header form button"))
        .await
        .expect("logout")
        .click()
        .await
        .expect("click");
}

async fn click(page: &WebDriver, css: &str) {
    page.find(By::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

/// Staff add a partner through the form.
async fn create_partner(staff: &WebDriver, base: &str, id: &str, name: &str, stage: &str) {
    staff
        .goto(format!("{base}/partners/new"))
        .await
        .expect("form");
    fill(staff, "id", id).await;
    fill(staff, "name", name).await;
    fill(staff, "country", "TW").await;
    fill(staff, "region", "Taipei").await;
    click(
        staff,
        &format!("select[name='stage'] option[value='{stage}']"),
    )
    .await;
    click(staff, "#save-partner").await;
    let text = wait_text(staff, "Partner added.").await;
    assert!(text.contains(name), "{text}");
}

/// Staff add a partner user; returns the one-time password shown once.
async fn add_user(staff: &WebDriver, base: &str, org: &str, user: &str, name: &str) -> String {
    staff
        .goto(format!("{base}/partners/{org}"))
        .await
        .expect("partner page");
    fill(staff, "username", user).await;
    fill(staff, "display_name", name).await;
    click(staff, "#add-user").await;
    wait_text(staff, "One-time password").await;
    let password = staff
        .find(By::Id("new-password"))
        .await
        .expect("the one-time password")
        .text()
        .await
        .expect("text");
    assert_eq!(password.len(), 24);
    password
}

#[tokio::test]
async fn staff_set_up_a_partner_user_who_sees_only_its_organization_in_chinese() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).expect("mkdir");
    let node = NodeSetup::init(Path::new(BIN), &node_dir, "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let admin_password = daemon.first_admin_password().expect("first admin password");
    let base = daemon.url();
    let driver = Driver::start();

    // Staff: log in, add two partners, add a user to one of them.
    let staff = browser(&driver, &dir.path().join("profile-staff")).await;
    let t0 = Instant::now();
    log_in(&staff, &base, "admin", &admin_password).await;
    wait_text(&staff, "Inbox").await;
    eprintln!("logged in after {:?}", t0.elapsed());
    for (id, name) in [("globex", "Globex Taiwan"), ("initech", "Initech Trading")] {
        create_partner(&staff, &base, id, name, "prospect").await;
        eprintln!("partner {id} after {:?}", t0.elapsed());
    }
    let password = add_user(&staff, &base, "initech", "ina", "Ina Wang").await;
    log_out(&staff).await;
    wait_text(&staff, "You are logged out.").await;
    eprintln!("staff done after {:?}", t0.elapsed());
    staff.quit().await.expect("quit");

    // The partner user: only its own organization.
    let partner = browser(&driver, &dir.path().join("profile-partner")).await;
    log_in(&partner, &base, "ina", &password).await;
    let home = wait_text(&partner, "Inbox").await;
    eprintln!("partner logged in after {:?}", t0.elapsed());
    assert!(
        home.contains("Initech Trading") && !home.contains("Globex"),
        "{home}"
    );
    assert!(
        partner
            .find_all(By::Css("a[href='/partners']"))
            .await
            .expect("query")
            .is_empty(),
        "no directory link for partners"
    );
    partner
        .find(By::Id("own-org"))
        .await
        .expect("own organization")
        .click()
        .await
        .expect("click");
    wait_text(&partner, "Exchanges").await;
    partner
        .goto(format!("{base}/partners/globex"))
        .await
        .expect("other org");
    let other = text_of(&partner).await;
    assert!(
        other.contains("There is no such page.") && !other.contains("Globex"),
        "{other}"
    );
    partner
        .goto(format!("{base}/partners"))
        .await
        .expect("directory");
    assert!(
        text_of(&partner)
            .await
            .contains("You may not see this page.")
    );

    // Switch to 中文; the choice is kept.
    partner.goto(format!("{base}/")).await.expect("home");
    partner
        .find(By::Css("a[lang='zh-TW']"))
        .await
        .expect("switch")
        .click()
        .await
        .expect("click");
    let zh = wait_text(&partner, "收件匣").await;
    // On a phone-wide window the menu is folded behind its button.
    assert!(zh.contains("選單") && !zh.contains("登出"), "{zh}");
    open_menu(&partner).await;
    let zh = text_of(&partner).await;
    assert!(zh.contains("登出") && zh.contains("保固申請"), "{zh}");
    partner
        .goto(format!("{base}/partners/initech"))
        .await
        .expect("page");
    assert!(
        text_of(&partner).await.contains("經銷商"),
        "type shown in Chinese"
    );
    let html = partner.source().await.expect("source");
    assert!(html.contains("lang=\"zh-TW\""));
    log_out(&partner).await;
    wait_text(&partner, "您已登出").await;
    eprintln!("all done after {:?}", t0.elapsed());
    partner.quit().await.expect("quit");
    drop(daemon);
}

#[tokio::test]
async fn a_lead_is_offered_accepted_and_won_in_the_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).expect("mkdir");
    let node = NodeSetup::init(Path::new(BIN), &node_dir, "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let admin_password = daemon.first_admin_password().expect("first admin password");
    let base = daemon.url();
    let driver = Driver::start();

    let staff = browser(&driver, &dir.path().join("profile-staff")).await;
    log_in(&staff, &base, "admin", &admin_password).await;
    wait_text(&staff, "Inbox").await;
    create_partner(&staff, &base, "globex", "Globex Taiwan", "active").await;
    let password = add_user(&staff, &base, "globex", "mei", "Mei Lin").await;

    staff.goto(format!("{base}/leads/new")).await.expect("form");
    fill(&staff, "company", "Contoso").await;
    fill(&staff, "country", "TW").await;
    fill(&staff, "product_lines", "cnc; laser").await;
    fill(&staff, "estimated_value", "125000").await;
    fill(&staff, "currency", "TWD").await;
    fill(&staff, "campaign", "spring").await;
    click(&staff, "input[name='consent']").await;
    click(&staff, "#save-lead").await;
    let text = wait_text(&staff, "Lead saved and distributed").await;
    assert!(
        text.contains("offered") && text.contains("Globex Taiwan"),
        "{text}"
    );
    let lead_url = staff.current_url().await.expect("url").to_string();
    log_out(&staff).await;
    wait_text(&staff, "You are logged out.").await;

    let partner = browser(&driver, &dir.path().join("profile-partner")).await;
    log_in(&partner, &base, "mei", &password).await;
    let home = wait_text(&partner, "Inbox").await;
    assert!(
        home.contains("Leads offered to you wait") && home.contains("Contoso"),
        "{home}"
    );
    partner
        .goto(format!("{base}/offers"))
        .await
        .expect("offers");
    click(&partner, "#offers a").await;
    wait_text(&partner, "Accept or decline").await;
    click(&partner, "#accept").await;
    wait_text(&partner, "Sent.").await;
    let status = partner
        .find(By::Id("offer-status"))
        .await
        .expect("status")
        .text()
        .await
        .expect("text");
    assert_eq!(status, "accepted");
    click(&partner, "#progress-status option[value='won']").await;
    fill(&partner, "won_amount", "120000").await;
    fill(&partner, "won_on", "12/01/2026").await;
    click(&partner, "#report").await;
    wait_text(&partner, "Sent.").await;
    // In Chinese, the same lead reads 成交.
    click(&partner, "a[lang='zh-TW']").await;
    let zh = wait_text(&partner, "成交").await;
    assert!(zh.contains("歷程"), "{zh}");
    fits_the_phone(
        &partner,
        &base,
        &[
            "/",
            "/offers",
            "/deals",
            "/shop",
            "/orders",
            "/service",
            "/claims",
            "/mdf",
            "/notifications",
            "/account",
        ],
    )
    .await;
    partner.quit().await.expect("quit");

    log_in(&staff, &base, "admin", &admin_password).await;
    wait_text(&staff, "Inbox").await;
    staff.goto(lead_url).await.expect("lead");
    let text = wait_text(&staff, "TWD 120,000.00").await;
    assert!(text.contains("won"), "{text}");
    staff
        .goto(format!("{base}/leads/analysis"))
        .await
        .expect("analysis");
    wait_text(&staff, "Conversion analysis").await;
    let bars = staff
        .find_all(By::Css("svg.chart rect"))
        .await
        .expect("chart");
    assert_eq!(bars.len(), 2, "one offered and one won bar");
    let table = text_of(&staff).await;
    assert!(
        table.contains("100.0 %") && table.contains("TWD 120,000.00"),
        "{table}"
    );
    fits_the_phone(
        &staff,
        &base,
        &[
            "/",
            "/partners",
            "/partners/globex",
            "/leads",
            "/leads/new",
            "/leads/rules",
            "/leads/analysis",
            "/registrations",
            "/catalog",
            "/orders",
            "/service",
            "/claims",
            "/mdf",
            "/notifications",
            "/account",
        ],
    )
    .await;
    staff.quit().await.expect("quit");
    drop(daemon);
}

/// Answers the quiz on the page: the right choices when `right`, a wrong
/// one for every question otherwise; `key` maps question ids to their
/// right choices.
async fn answer_quiz(page: &WebDriver, key: &[(&str, &[usize])], right: bool) {
    let drawn = page
        .find_all(By::Css("fieldset[id^='question-']"))
        .await
        .expect("questions");
    assert_eq!(drawn.len(), 2, "two questions are drawn");
    for fieldset in drawn {
        let id = fieldset.id().await.expect("id").expect("an id");
        let q = id.trim_start_matches("question-");
        let (_, choices) = key.iter().find(|(k, _)| *k == q).expect("a known question");
        let multiple = choices.len() > 1;
        let picks: Vec<usize> = if right {
            choices.to_vec()
        } else {
            vec![if choices.contains(&0) { 2 } else { 0 }]
        };
        for c in picks {
            let css = if multiple {
                format!("input[name='a.{q}.{c}']")
            } else {
                format!("input[name='a.{q}'][value='{c}']")
            };
            click(page, &css).await;
        }
    }
    click(page, "#quiz-submit").await;
}

/// A partner's user finds a resource by search and downloads it, reads a
/// course, fails its quiz once, passes, and prints the certificate — once
/// in English and once in 繁體中文.
#[tokio::test]
async fn a_partner_learns_passes_and_prints_its_certificate_in_the_browser() {
    use crate::web::{Browser, add_partner_user, create_partner};
    let dir = tempfile::tempdir().expect("tempdir");
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).expect("mkdir");
    let node = NodeSetup::init(Path::new(BIN), &node_dir, "acme").expect("init");
    let daemon = node.start(Path::new(BIN)).expect("starts");
    let admin_password = daemon.first_admin_password().expect("first admin password");
    let base = daemon.url();

    // Staff publish a guide and a course (over HTTP; the browser is the
    // partner's).
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    let mei_pw = add_partner_user(&mut staff, "globex", "mei", "Mei Lin").await;
    let wen_pw = add_partner_user(&mut staff, "globex", "wen", "Wen Chen").await;
    let guide: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let form = staff.get("/library/new").await;
    let csrf = Browser::csrf(&form);
    let published = staff
        .post_multipart(
            "/library/new",
            &[
                ("csrf", &csrf),
                ("title", "Spindle maintenance guide"),
                ("tags", "spindle, 保養"),
                ("language", "en"),
                ("format", "file"),
                ("everyone", "yes"),
            ],
            &[("spindle-guide.pdf", "application/pdf", &guide)],
        )
        .await;
    assert_eq!(published.status, 303, "{}", published.body);
    let questions = "Grease the spindle every?\n- Day\n* 500 hours\n- Never\n\nWhich keys change a tool?\n* Holder key\n* Torque wrench\n- Hammer\n\nRed light?\n- Ready\n* Emergency stop\n- Idle";
    let published = staff
        .post_multipart(
            "/library/new",
            &[
                ("csrf", &csrf),
                ("title", "CNC basics"),
                ("language", "en"),
                ("format", "course"),
                ("code", "cnc-basics"),
                ("level", "basic"),
                ("valid_days", "365"),
                ("lessons", "# Daily care\nWipe the rails every day."),
                ("questions", questions),
                ("draw", "2"),
                ("pass_percent", "100"),
                ("attempts", "3"),
                ("everyone", "yes"),
            ],
            &[],
        )
        .await;
    assert_eq!(published.status, 303, "{}", published.body);
    let key: &[(&str, &[usize])] = &[("q1", &[1]), ("q2", &[0, 1]), ("q3", &[1])];

    let driver = Driver::start();
    for (user, password, chinese) in [("mei", &mei_pw, false), ("wen", &wen_pw, true)] {
        let downloads = dir.path().join(format!("downloads-{user}"));
        std::fs::create_dir_all(&downloads).expect("mkdir");
        let page = browser_saving_to(
            &driver,
            &dir.path().join(format!("profile-{user}")),
            Some(&downloads),
        )
        .await;
        log_in(&page, &base, user, password).await;
        let words = |en: &'static str, zh: &'static str| if chinese { zh } else { en };
        if chinese {
            page.goto(format!("{base}/")).await.expect("home");
            click(&page, "a[lang='zh-TW']").await;
            wait_text(&page, "收件匣").await;
        }
        // Search the library and download the guide.
        page.goto(format!("{base}/library")).await.expect("library");
        fill(&page, "q", words("spindle", "保養")).await;
        click(&page, "#library-search").await;
        wait_text(&page, words("Results for", "搜尋結果")).await;
        click(&page, "#resources a").await;
        wait_text(&page, "spindle-guide.pdf").await;
        click(&page, "#download").await;
        let saved = downloads.join("spindle-guide.pdf");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read(&saved).ok().as_deref() != Some(guide.as_slice()) {
            assert!(
                Instant::now() < deadline,
                "the guide was never downloaded whole"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The course: read it, fail once, pass.
        page.goto(format!("{base}/library")).await.expect("library");
        fill(&page, "q", "CNC").await;
        click(&page, "#library-search").await;
        wait_text(&page, "CNC basics").await;
        click(&page, "#resources a").await;
        wait_text(&page, "Wipe the rails every day.").await;
        click(&page, "#take-quiz").await;
        wait_text(&page, words("Submit my answers", "提交答案")).await;
        answer_quiz(&page, key, false).await;
        wait_text(&page, words("Failed", "不及格")).await;
        click(&page, "#retry").await;
        wait_text(&page, words("Submit my answers", "提交答案")).await;
        answer_quiz(&page, key, true).await;
        // The result's own figure: the quiz page itself says what passes
        // ("答對 100% 即及格"), so its word alone could be matched too early.
        let passed = wait_text(&page, "2 / 2").await;
        assert!(passed.contains(words("Passed", "及格")), "{passed}");
        click(&page, "#certification-link").await;
        let certificate = wait_text(&page, words("This certifies that", "茲證明")).await;
        assert!(
            certificate.contains(if chinese { "Wen Chen" } else { "Mei Lin" })
                && certificate.contains("CNC basics"),
            "{certificate}"
        );
        // Printing hides the menu and prints the certificate.
        let pdf = page
            .print_page(thirtyfour::common::print::PrintParameters::default())
            .await
            .expect("printed");
        assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 1000, "a PDF");
        let display = || async {
            page.execute(
                "return window.getComputedStyle(document.querySelector('header')).display;",
                Vec::new(),
            )
            .await
            .expect("script")
            .json()
            .clone()
        };
        assert_ne!(display().await, "none", "on screen the menu shows");
        page.cdp()
            .send_raw(
                "Emulation.setEmulatedMedia",
                serde_json::json!({"media": "print"}),
            )
            .await
            .expect("print media");
        assert_eq!(display().await, "none", "on paper the menu does not");
        page.cdp()
            .send_raw(
                "Emulation.setEmulatedMedia",
                serde_json::json!({"media": ""}),
            )
            .await
            .expect("screen media");
        fits_the_phone(&page, &base, &["/library", "/certifications"]).await;
        page.quit().await.expect("quit");
    }
    drop(daemon);
}

/// The day `days` from now, `YYYY-MM-DD` (a date field's value).
fn date_in(days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let day = jiff::Timestamp::from_millisecond(now + days * 86_400_000)
        .map(|t| jiff::tz::Offset::UTC.to_datetime(t).date())
        .expect("a date");
    day.to_string()
}

#[tokio::test]
async fn staff_rank_compare_and_survey_and_a_partner_answers_in_chinese_in_the_browser() {
    use crate::web::{Browser, add_partner_user, create_partner};
    use guanxi_tests::{Api, eventually, expect};
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).expect("mkdir");
    let bin = Path::new(BIN);
    let node = NodeSetup::init(bin, &node_dir, "acme").expect("init");
    let daemon = node.start(bin).expect("starts");
    let admin_password = daemon.first_admin_password().expect("first admin password");
    let base = daemon.url();

    // The set-up over HTTP: two partners, a won and a declined lead at
    // Globex, score weights, a goal proposed to Globex.
    let mut staff = Browser::new(&node, &daemon);
    assert_eq!(staff.login("admin", &admin_password).await.status, 303);
    create_partner(&mut staff, "globex", "Globex Taiwan").await;
    create_partner(&mut staff, "initech", "Initech").await;
    let mei_pw = add_partner_user(&mut staff, "globex", "mei", "Mei Lin").await;
    let api = Api::of(&node, &daemon);
    let token = node.token(bin, "setup", "admin");
    let mei = node.token(bin, "mei-script", "mei");
    let rules = json!({"offer_hours": 48, "rules": [{"name": "tw", "countries": ["TW"], "product_lines": [],
        "tiers": ["gold"], "capacity": 0, "strategy": "round_robin", "weights": {"globex": 100, "initech": 0}}]});
    expect(
        &api,
        "put",
        "/api/v1/lead-rules",
        &token,
        Some(&rules.to_string()),
        200,
    )
    .await;
    for company in ["Contoso", "Fabrikam", "Northwind"] {
        let lead = json!({"customer": {"company": company, "contact": "Lin", "email": "it@example.tw", "phone": ""},
            "country": "TW", "region": "", "product_lines": ["cnc"], "estimated_value": null,
            "source": "web", "campaign": "", "consent": true, "notes": ""});
        expect(
            &api,
            "post",
            "/api/v1/leads",
            &token,
            Some(&lead.to_string()),
            201,
        )
        .await;
    }
    let offers = eventually("Globex's offers", || async {
        let (_, v) = api.call("get", "/api/v1/offers", Some(&mei), None).await;
        v["offers"].as_array().filter(|o| !o.is_empty()).cloned()
    })
    .await;
    let path = |o: &serde_json::Value| {
        format!(
            "/api/v1/offers/acme/{}/messages",
            o["subject"].as_str().unwrap_or("")
        )
    };
    expect(
        &api,
        "post",
        &path(&offers[0]),
        &mei,
        Some(r#"{"kind":"lead.accept","body":{"note":""}}"#),
        200,
    )
    .await;
    let won = json!({"kind": "lead.update", "body": {"status": "won", "won_value": {"amount": 500_000, "currency": "TWD"},
        "won_on": "2026-12-01", "lost_reason": null, "note": ""}});
    expect(
        &api,
        "post",
        &path(&offers[0]),
        &mei,
        Some(&won.to_string()),
        200,
    )
    .await;
    let form = staff.get("/scorecard/weights").await;
    let saved = staff
        .post(
            "/scorecard/weights",
            &[
                ("csrf", &Browser::csrf(&form)),
                ("weights", "* leads_won 1 1"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let month = expect(
        &api,
        "get",
        "/api/v1/scorecard?partner=globex",
        &token,
        None,
        200,
    )
    .await["period"]["name"]
        .as_str()
        .expect("this month")
        .to_string();
    let goal = json!({"partner": "globex", "period": month, "metric": "leads_won", "target": 2, "owner": "Mei", "note": ""});
    expect(
        &api,
        "post",
        "/api/v1/goals",
        &token,
        Some(&goal.to_string()),
        201,
    )
    .await;

    let driver = Driver::start();
    // Staff, in English: the ranking, two periods compared, a survey sent.
    let page = browser(&driver, &dir.path().join("profile-staff")).await;
    log_in(&page, &base, "admin", &admin_password).await;
    page.goto(format!("{base}/scorecard/ranking"))
        .await
        .expect("ranking");
    let ranking = wait_text(&page, "Partner ranking").await;
    let (g, i) = (ranking.find("Globex Taiwan"), ranking.find("Initech"));
    assert!(
        g.is_some() && i.is_some() && g < i,
        "Globex ranks first: {ranking}"
    );
    click(&page, "#rank-globex a").await;
    wait_text(&page, "Leads won").await;
    let year = &month[..4];
    fill(&page, "period", year).await;
    fill(
        &page,
        "compare",
        &format!("{}", year.parse::<i64>().unwrap_or(2026) - 1),
    )
    .await;
    click(&page, "#scorecard-show").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !page
        .current_url()
        .await
        .expect("url")
        .as_str()
        .contains("compare=")
    {
        assert!(
            Instant::now() < deadline,
            "the two periods were never shown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let compared = wait_text(&page, "Month by month").await;
    assert!(
        compared.contains("Leads offered") && compared.contains("Score: 100 / 100"),
        "{compared}"
    );
    let header = page
        .find(By::Css("#scorecard thead"))
        .await
        .expect("the table's head")
        .text()
        .await
        .expect("text");
    assert!(
        header.contains(year)
            && header.contains(&format!("{}", year.parse::<i64>().unwrap_or(2026) - 1)),
        "{header}"
    );
    page.goto(format!("{base}/surveys/new"))
        .await
        .expect("survey form");
    fill(&page, "title_en", "How are we doing?").await;
    fill(&page, "title_zh", "我們做得如何？").await;
    fill(&page, "series", "satisfaction").await;
    fill(&page, "round", &month).await;
    fill(
        &page,
        "questions",
        "nps: How likely are you to recommend us? | 您推薦我們的可能性有多高？\ntext?: Anything else? | 還有其他意見嗎？",
    )
    .await;
    // A date field's typed form depends on the browser's locale: its value
    // is set as the page's script would.
    page.execute(
        "document.querySelector('input[name=closes]').value = arguments[0];",
        vec![serde_json::json!(date_in(10))],
    )
    .await
    .expect("the closing day");
    fill(&page, "partners", "globex").await;
    click(&page, "#survey-send").await;
    let sent = wait_text(&page, "Survey sent.").await;
    assert!(
        sent.contains("Answers: 0") && sent.contains("Partners asked: 1"),
        "{sent}"
    );
    let results_url = page.current_url().await.expect("url").to_string();
    fits_the_phone(
        &page,
        &base,
        &[
            "/scorecard/ranking",
            "/surveys",
            "/scorecard?partner=globex",
        ],
    )
    .await;

    // Mei, in Chinese: answers the survey, accepts the goal, reads its own
    // scorecard.
    let partner = browser(&driver, &dir.path().join("profile-mei")).await;
    log_in(&partner, &base, "mei", &mei_pw).await;
    partner.goto(format!("{base}/")).await.expect("home");
    click(&partner, "a[lang='zh-TW']").await;
    wait_text(&partner, "收件匣").await;
    partner
        .goto(format!("{base}/surveys"))
        .await
        .expect("surveys");
    wait_text(&partner, "我們做得如何？").await;
    click(&partner, "#surveys-received a").await;
    wait_text(&partner, "您推薦我們的可能性有多高？").await;
    click(&partner, "input[name='q1'][value='9']").await;
    fill(&partner, "q2", "交期很準").await;
    click(&partner, "#survey-submit").await;
    wait_text(&partner, "感謝您").await;
    partner
        .goto(format!("{base}/scorecard"))
        .await
        .expect("scorecard");
    let own = wait_text(&partner, "共同目標").await;
    assert!(
        own.contains("問卷回覆") && (own.contains("有落後風險") || own.contains("進度正常")),
        "{own}"
    );
    click(&partner, "#goal-list a").await;
    wait_text(&partner, "您的回覆").await;
    click(&partner, "#goal-accept").await;
    let agreed = wait_text(&partner, "已同意").await;
    assert!(agreed.contains("接受"), "{agreed}");
    fits_the_phone(&partner, &base, &["/scorecard", "/surveys"]).await;
    partner.quit().await.expect("quit");

    // Staff see the answer, then read the ranking in Chinese.
    page.goto(results_url).await.expect("results");
    let results = wait_text(&page, "NPS 100").await;
    assert!(
        results.contains("交期很準") && results.contains("mei"),
        "{results}"
    );
    page.goto(format!("{base}/")).await.expect("home");
    click(&page, "a[lang='zh-TW']").await;
    wait_text(&page, "收件匣").await;
    page.goto(format!("{base}/scorecard/ranking"))
        .await
        .expect("ranking");
    wait_text(&page, "合作夥伴排名").await;
    page.quit().await.expect("quit");
    drop(daemon);
}
