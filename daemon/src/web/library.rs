//! Web pages of the shared library: the list (staff: this node's own
//! resources, or those received from peers; a partner user: what targets
//! its organization), search, "new since your last visit", a resource's
//! page (the article rendered safely, the link, the file to download by
//! `Range`, earlier versions and the origin of a resource passed on), and
//! for staff the forms to publish (a file of up to 200 MiB streamed to
//! disk, a link or an article), publish a new version, withdraw, and pass
//! on a received resource to this node's own partners.

use super::access::{Member, Page, Staff};
use super::form::{Fields, field};
use super::{Frame, LIST_PAGE, redirect_with_flash};
use crate::library::{self, Content, Draft, Item, Shelf, Target, files};
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use guanxi_protocol::messages::{Attachment, Course, MAX_RESOURCE_BYTES, Quiz};
use guanxi_protocol::quiz::AnswerKey;
use guanxi_protocol::{Millis, ReasonCode};
use serde::Deserialize;
use std::sync::Arc;

/// The library routes.
pub fn routes() -> Router<Arc<Node>> {
    // The forms that may carry a file: a resource and a little more.
    Router::new()
        .route("/library/new", get(new_form).post(publish))
        .route("/library/{key}/{subject}", get(page).post(act))
        .layer(axum::extract::DefaultBodyLimit::max(
            MAX_RESOURCE_BYTES as usize + 1024 * 1024,
        ))
        .route("/library", get(list))
        .route("/library/{key}/{subject}/file/{sha}", get(download))
}

#[derive(Deserialize, Default)]
struct LibraryQuery {
    q: Option<String>,
    shelf: Option<String>,
    after: Option<String>,
}

/// A resource as a list row.
pub struct Row {
    pub link: String,
    pub title: String,
    pub format: &'static str,
    pub folder: String,
    pub tags: String,
    pub language: String,
    pub publisher: String,
    pub origin: Option<String>,
    pub when: String,
    pub new: bool,
    pub withdrawn: bool,
}

impl Row {
    /// The catalog key of the resource's form.
    pub fn format_key(&self) -> String {
        format!("library.format_{}", self.format)
    }
}

fn row(m: &Member, item: &Item, seen: Millis) -> Row {
    let r = &item.resource;
    Row {
        link: item.link(),
        title: r.title.clone(),
        format: r.format(),
        folder: r.folder.clone(),
        tags: r.tags.join(", "),
        language: r.language.clone(),
        publisher: item.publisher.clone(),
        origin: r.origin.as_ref().map(|o| o.from.to_string()),
        when: m.loc().when(item.updated_at),
        new: seen > 0 && item.updated_at > seen && !item.withdrawn,
        withdrawn: item.withdrawn,
    }
}

#[derive(Template)]
#[template(path = "library.html")]
struct ListPage {
    f: Frame,
    q: String,
    received: bool,
    searching: bool,
    rows: Vec<Row>,
    fresh: usize,
    next: Option<String>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<LibraryQuery>, m: Member) -> Page {
    let query = q.q.clone().unwrap_or_default().trim().to_string();
    let shelf = match q.shelf.as_deref() {
        Some("received") if m.staff() => Shelf::Received,
        _ => Shelf::Own,
    };
    let (me, user, after) = (node.identity.id.clone(), m.user.clone(), q.after.clone());
    let q_ = query.clone();
    let (items, next, seen) = node
        .reading(move |r| {
            let seen = library::last_seen(r, &user.username)?;
            if q_.is_empty() {
                let (items, next) =
                    library::page(r, &me, &user, shelf, after.as_deref(), LIST_PAGE)?;
                Ok((items, next, seen))
            } else {
                Ok((library::search(r, &me, &user, &q_, LIST_PAGE)?, None, seen))
            }
        })
        .await?;
    if query.is_empty() && q.after.is_none() {
        library::seen(&node, &m.user.username).await?;
    }
    let rows: Vec<Row> = items.iter().map(|i| row(&m, i, seen)).collect();
    let next = next.map(|n| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        if shelf == Shelf::Received {
            url.append_pair("shelf", "received");
        }
        url.append_pair("after", &n);
        format!("/library?{}", url.finish())
    });
    let page = ListPage {
        f: m.frame(),
        searching: !query.is_empty(),
        q: query,
        received: shelf == Shelf::Received,
        fresh: rows.iter().filter(|r| r.new).count(),
        rows,
        next,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// The values a publication form shows.
#[derive(Default)]
pub struct FormValues {
    pub action: String,
    pub title: String,
    pub summary: String,
    pub folder: String,
    pub tags: String,
    pub language: String,
    pub valid_from: String,
    pub valid_to: String,
    pub format: String,
    pub link: String,
    pub article: String,
    pub everyone: bool,
    pub types: String,
    pub tiers: String,
    pub countries: String,
    pub partners: String,
    /// A new version: the content may stay as it is.
    pub existing: bool,
    /// A course's fields (lessons and questions as written in the form).
    pub code: String,
    pub level: String,
    pub valid_days: String,
    pub lessons: String,
    pub questions: String,
    pub draw: String,
    pub pass_percent: String,
    pub attempts: String,
}

/// Writes a course back as the form reads it (lessons under `# ` headings,
/// questions with `- ` and `* ` choices).
fn course_text(c: &Course, key: &AnswerKey) -> (String, String) {
    let lessons = c
        .lessons
        .iter()
        .map(|l| format!("# {}\n{}\n", l.title, l.text))
        .collect::<Vec<_>>()
        .join("\n");
    let questions = c
        .quiz
        .questions
        .iter()
        .map(|q| {
            let right = key.get(&q.id).cloned().unwrap_or_default();
            let mut block = q.text.clone();
            for (i, choice) in q.choices.iter().enumerate() {
                let mark = if right.contains(&(i as i64)) {
                    '*'
                } else {
                    '-'
                };
                block.push_str(&format!("\n{mark} {choice}"));
            }
            block
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    (lessons, questions)
}

impl FormValues {
    /// The course fields of a form (defaults for a new course).
    fn course_of(course: Option<&Course>, key: &AnswerKey) -> FormValues {
        match course {
            Some(c) => {
                let (lessons, questions) = course_text(c, key);
                FormValues {
                    code: c.code.clone(),
                    level: c.level.clone(),
                    valid_days: c.valid_days.map(|d| d.to_string()).unwrap_or_default(),
                    lessons,
                    questions,
                    draw: c.quiz.draw.to_string(),
                    pass_percent: c.quiz.pass_percent.to_string(),
                    attempts: c.quiz.attempts.to_string(),
                    ..FormValues::default()
                }
            }
            None => FormValues {
                valid_days: "365".into(),
                draw: String::new(),
                pass_percent: "80".into(),
                attempts: "3".into(),
                ..FormValues::default()
            },
        }
    }

    fn of(item: &library::OwnResource) -> FormValues {
        let r = &item.resource;
        let t = &item.target;
        FormValues {
            action: format!("/library/own/{}", item.id),
            title: r.title.clone(),
            summary: r.summary.clone(),
            folder: r.folder.clone(),
            tags: r.tags.join(", "),
            language: r.language.clone(),
            valid_from: r
                .valid_from
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            valid_to: r
                .valid_to
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            format: "keep".into(),
            link: r.link.clone().unwrap_or_default(),
            article: r.article.clone().unwrap_or_default(),
            everyone: t.everyone,
            types: t.types.join(", "),
            tiers: t.tiers.join(", "),
            countries: t.countries.join(", "),
            partners: t.partners.join(", "),
            existing: true,
            ..FormValues::course_of(r.course.as_deref(), &item.answers)
        }
    }
}

#[derive(Template)]
#[template(path = "library_form.html")]
struct FormPage {
    f: Frame,
    v: FormValues,
}

async fn new_form(s: Staff) -> Page {
    let page = FormPage {
        f: s.frame(),
        v: FormValues {
            action: "/library/new".into(),
            format: "file".into(),
            everyone: true,
            ..FormValues::course_of(None, &AnswerKey::new())
        },
    };
    Ok(s.page(StatusCode::OK, page.render()))
}

fn bad(message: impl Into<String>) -> library::Refusal {
    library::Refusal {
        code: ReasonCode::BadBody,
        message: message.into(),
    }
}

/// Reads a publication form: its fields, and the file (streamed to disk)
/// when one was chosen. The CSRF token must come before the file.
async fn read_form(
    node: &Node,
    s: &Staff,
    mut parts: Multipart,
) -> Result<Result<(Fields, Option<Attachment>), library::Refusal>, super::access::WebError> {
    let mut fields = Fields::new();
    let mut file = None;
    loop {
        let mut part = match parts.next_field().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => return Ok(Err(bad(format!("the form could not be read: {e}")))),
        };
        let name = part.name().unwrap_or("").to_string();
        if name != "file" {
            let text = part.text().await.map_err(|e| bad(e.to_string()));
            match text {
                Ok(t) => fields.insert(name, t),
                Err(e) => return Ok(Err(e)),
            };
            continue;
        }
        let file_name = part.file_name().unwrap_or("").trim().to_string();
        let content_type = part
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_string();
        s.csrf(field(&fields, "csrf"))?;
        let mut incoming = files::Incoming::start(&node.config().data_dir)
            .await
            .map_err(|e| {
                super::access::WebError::from(crate::engine::EngineError::Failed(e.to_string()))
            })?;
        loop {
            match part.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = incoming.write(&chunk).await {
                        return Ok(Err(bad(format!("file: {e}"))));
                    }
                }
                Ok(None) => break,
                Err(e) => return Ok(Err(bad(format!("file: the upload broke off: {e}")))),
            }
        }
        if file_name.is_empty() {
            continue; // no file chosen
        }
        match incoming.finish().await {
            Ok((sha256, size)) => {
                file = Some(Attachment {
                    sha256,
                    name: file_name
                        .chars()
                        .filter(|c| !c.is_control() && *c != '/')
                        .collect(),
                    content_type,
                    size: size as i64,
                });
            }
            Err(files::FileError::Empty) => {}
            Err(e) => return Ok(Err(bad(format!("file: {e}")))),
        }
    }
    s.csrf(field(&fields, "csrf"))?;
    Ok(Ok((fields, file)))
}

fn target_of(f: &Fields) -> Result<Target, library::Refusal> {
    Target::parse(
        field(f, "everyone") == "yes",
        field(f, "types"),
        field(f, "tiers"),
        field(f, "countries"),
        field(f, "partners"),
    )
}

/// Reads a course from the form: lessons, questions and the quiz's rules.
fn course_of(f: &Fields) -> Result<Content, library::Refusal> {
    let number = |name: &str, default: i64| -> Result<i64, library::Refusal> {
        match field(f, name) {
            "" => Ok(default),
            n => n
                .parse()
                .map_err(|_| bad(format!("{name}: {n:?} is not a whole number"))),
        }
    };
    let (questions, key) = crate::courses::parse_questions(field(f, "questions"))?;
    let pool = questions.len() as i64;
    let valid_days = match field(f, "valid_days") {
        "" => None,
        _ => Some(number("valid_days", 365)?),
    };
    let course = Course {
        code: field(f, "code").to_string(),
        level: field(f, "level").to_string(),
        lessons: crate::courses::parse_lessons(field(f, "lessons"), field(f, "title")),
        quiz: Quiz {
            pass_percent: number("pass_percent", 80)?,
            attempts: number("attempts", 3)?,
            draw: number("draw", pool)?,
            questions,
        },
        valid_days,
        assigned: None,
    };
    Ok(Content::Course(Box::new(course), key))
}

fn draft_of(f: &Fields, file: Option<Attachment>) -> Result<Draft, library::Refusal> {
    let date = |name: &str| -> Result<Option<guanxi_protocol::money::Date>, library::Refusal> {
        match field(f, name) {
            "" => Ok(None),
            d => d
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{name}: {d:?} is not a date like 2027-01-31"))),
        }
    };
    let content = match field(f, "format") {
        "file" => Some(Content::File(
            file.ok_or_else(|| bad("file: choose a file to publish"))?,
        )),
        "link" => Some(Content::Link(field(f, "link").to_string())),
        "article" => Some(Content::Article(field(f, "article").to_string())),
        "course" => Some(course_of(f)?),
        "keep" => file.map(Content::File),
        other => {
            return Err(bad(format!(
                "format: {other:?} is not file, link, article or course"
            )));
        }
    };
    Ok(Draft {
        title: field(f, "title").to_string(),
        summary: field(f, "summary").to_string(),
        folder: field(f, "folder").to_string(),
        tags: field(f, "tags")
            .split([',', '，', '、'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        language: field(f, "language").to_string(),
        valid_from: date("valid_from")?,
        valid_to: date("valid_to")?,
        content,
        target: target_of(f)?,
    })
}

async fn publish(State(node): State<Arc<Node>>, s: Staff, parts: Multipart) -> Page {
    let (fields, file) = match read_form(&node, &s, parts).await? {
        Ok(read) => read,
        Err(r) => return Ok(s.refused(&r, "/library/new".into())),
    };
    let draft = match draft_of(&fields, file) {
        Ok(d) => d,
        Err(r) => return Ok(s.refused(&r, "/library/new".into())),
    };
    Ok(
        match library::publish(&node, &s.user, None, draft, None).await? {
            Ok((id, _)) => {
                redirect_with_flash(&format!("/library/own/{id}"), "done.library_published")
            }
            Err(r) => s.refused(&r, "/library/new".into()),
        },
    )
}

/// An earlier version for people.
pub struct VersionLine {
    pub version: i64,
    pub title: String,
    pub when: String,
    pub file: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "library_item.html")]
struct ItemPage {
    f: Frame,
    action: String,
    row: Row,
    summary: String,
    valid: String,
    article: Option<String>,
    link: Option<String>,
    /// (download link, name, size in words).
    file: Option<(String, String, String)>,
    versions: Vec<VersionLine>,
    /// Own resources: the form of the next version, the target in words,
    /// the peers holding it.
    own: Option<FormValues>,
    sent_to: Vec<String>,
    /// A received resource staff may pass on.
    pass_on: bool,
    withdrawn_note: String,
    /// Where a resource passed on first came from, and whether its
    /// signature checked out with a key this node knows.
    origin: Option<(String, &'static str)>,
    /// A course's lessons, quiz and the reader's attempts.
    course: Option<super::courses::CoursePart>,
}

fn size_words(bytes: i64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{} KiB", (bytes + 512) / 1024)
    } else {
        format!("{} MiB", (bytes + 512 * 1024) / (1024 * 1024))
    }
}

/// Whether the origin envelope is the first publisher's, signed with a key
/// this node has configured for it: `verified`, `unknown_key` or `bad`.
fn origin_check(node: &Node, origin: &guanxi_protocol::messages::Forwarded) -> &'static str {
    let Ok(bytes) = guanxi_protocol::crypto::b64url_decode(&origin.envelope) else {
        return "bad";
    };
    let Ok(envelope) = guanxi_protocol::SignedEnvelope::decode(&bytes) else {
        return "bad";
    };
    let fields = envelope.fields();
    if fields.from != origin.from || fields.kind != "resource.publish" {
        return "bad";
    }
    let Some(peer) = node.peer(&origin.from) else {
        return "unknown_key";
    };
    match peer
        .config
        .keys
        .iter()
        .find(|k| k.kid == envelope.envelope.sig.kid)
    {
        Some(k) if envelope.verify(&k.public_key).is_ok() => "verified",
        Some(_) => "bad",
        None => "unknown_key",
    }
}

async fn page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let (me, user) = (node.identity.id.clone(), m.user.clone());
    let (k, s) = (key.clone(), subject.clone());
    let staff = m.staff();
    let (item, own, record) = node
        .reading(move |r| {
            let item = library::item(r, &me, &user, &k, &s)?;
            let own = if staff && k == "own" {
                library::own(r, &s)?
            } else {
                None
            };
            let record = if staff && k != "own" {
                library::shared(r, &k, &s)?
            } else {
                None
            };
            Ok((item, own, record))
        })
        .await?;
    let item = m.found(item)?;
    let r = &item.resource;
    let loc = m.loc();
    let base = item.link();
    let versions: Vec<VersionLine> = if staff {
        let history = own
            .as_ref()
            .map(|d| d.history.clone())
            .or_else(|| record.as_ref().map(|r| r.history.clone()))
            .unwrap_or_default();
        history
            .iter()
            .rev()
            .map(|v| VersionLine {
                version: v.version,
                title: v.title.clone(),
                when: loc.when(v.published_at),
                file: v
                    .file
                    .as_ref()
                    .map(|f| (format!("{base}/file/{}", f.sha256), f.name.clone())),
            })
            .collect()
    } else {
        Vec::new()
    };
    let valid = match (&r.valid_from, &r.valid_to) {
        (None, None) => String::new(),
        (from, to) => format!(
            "{} – {}",
            from.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            to.as_ref().map(|d| d.to_string()).unwrap_or_default()
        ),
    };
    let data_dir = node.config().data_dir.clone();
    let file = r.file.as_ref().map(|f| {
        let held = files::has(&data_dir, &f.sha256);
        (
            if held {
                format!("{base}/file/{}", f.sha256)
            } else {
                String::new()
            },
            f.name.clone(),
            size_words(f.size),
        )
    });
    let course = match &r.course {
        Some(c) => Some(super::courses::course_part(&node, &m, &key, &subject, c).await?),
        None => None,
    };
    let page = ItemPage {
        f: m.frame(),
        course,
        action: base.clone(),
        row: row(&m, &item, 0),
        summary: r.summary.clone(),
        valid,
        article: r
            .article
            .as_deref()
            .map(|a| library::markdown::to_html_from(a, (key != "own").then_some(key.as_str()))),
        link: r.link.clone(),
        file,
        versions,
        sent_to: own.as_ref().map(|d| d.sent_to.clone()).unwrap_or_default(),
        own: own.as_ref().filter(|_| staff).map(FormValues::of),
        pass_on: staff && key != "own" && !item.withdrawn && r.course.is_none(),
        withdrawn_note: record
            .as_ref()
            .map(|r| r.withdraw_note.clone())
            .unwrap_or_default(),
        origin: r
            .origin
            .as_ref()
            .map(|o| (o.from.to_string(), origin_check(&node, o))),
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

async fn act(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    s: Staff,
    parts: Multipart,
) -> Page {
    let back = format!("/library/{key}/{subject}");
    let (fields, file) = match read_form(&node, &s, parts).await? {
        Ok(read) => read,
        Err(r) => return Ok(s.refused(&r, back)),
    };
    match (field(&fields, "action"), key.as_str()) {
        ("withdraw", "own") => {
            s.confirmed(field(&fields, "confirm"))?;
            let result = library::withdraw(&node, &subject, field(&fields, "note")).await;
            s.outcome(result, back, "done.library_withdrawn")
        }
        ("version", "own") => {
            let draft = match draft_of(&fields, file) {
                Ok(d) => d,
                Err(r) => return Ok(s.refused(&r, back)),
            };
            let result = library::publish(&node, &s.user, Some(subject.clone()), draft, None)
                .await
                .map(|r| r.map(|_| ()));
            s.outcome(result, back, "done.library_published")
        }
        ("assign", "own") => {
            let due = match field(&fields, "due") {
                "" => None,
                d => match d.parse() {
                    Ok(d) => Some(d),
                    Err(_) => {
                        return Ok(s.refused(
                            &bad(format!("due: {d:?} is not a date like 2027-01-31")),
                            back,
                        ));
                    }
                },
            };
            let result = library::assign(
                &node,
                &subject,
                field(&fields, "partner"),
                field(&fields, "person"),
                due,
            )
            .await;
            s.outcome(result, back, "done.course_assigned")
        }
        ("pass_on", peer) if peer != "own" => {
            let target = match target_of(&fields) {
                Ok(t) => t,
                Err(r) => return Ok(s.refused(&r, back)),
            };
            Ok(
                match library::pass_on(&node, &s.user, peer, &subject, target).await? {
                    Ok((id, _)) => {
                        redirect_with_flash(&format!("/library/own/{id}"), "done.library_published")
                    }
                    Err(r) => s.refused(&r, back),
                },
            )
        }
        _ => Err(s.error(StatusCode::BAD_REQUEST, "error.not_found")),
    }
}

async fn download(
    State(node): State<Arc<Node>>,
    Path((key, subject, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    m: Member,
) -> Page {
    let (me, user) = (node.identity.id.clone(), m.user.clone());
    let (k, s, h) = (key.clone(), subject.clone(), sha.clone());
    let found = node
        .reading(move |r| library::downloadable(r, &me, &user, &k, &s, &h))
        .await?;
    let file = m.found(found)?;
    let Some(path) = files::path(&node.config().data_dir, &sha).filter(|p| p.is_file()) else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    Ok(files::serve(path, &file.content_type, &file.name, &headers)
        .await
        .into_response())
}
