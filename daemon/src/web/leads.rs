//! Web pages for leads: the vendor's lead list, new lead form, CSV import,
//! lead page (offers, history, rule trace, manual assignment, withdrawal),
//! distribution rules and conversion analysis; deal registrations for the
//! vendor to decide; and for partners (users of this node without a daemon,
//! or staff of a partner daemon) the leads offered to them and the deals they
//! registered.

use super::access::{Member, Page, Staff};
use super::format::Locale;
use super::{Frame, LIST_PAGE, ListQuery, next_link, redirect_with_flash};
use crate::accounts::{Role, User};
use crate::clock::now_ms;
use crate::directory::{self, Partner};
use crate::leads::analysis::{GroupBy, Row};
use crate::leads::distribution::{Rule, Rules, Strategy};
use crate::leads::intake::{self, FieldError, LeadForm, RowError};
use crate::leads::{self, Incoming, LeadView, Refusal, RegistrationView, conflicts};
use crate::node::Node;
use crate::records::Direction;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::StatusCode;

use axum::routing::{get, post};
use guanxi_protocol::ReasonCode;
use guanxi_protocol::messages::{Customer, LeadRegister};
use guanxi_protocol::money::{Currency, Money};
use guanxi_protocol::state::LeadEvent;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The lead routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/leads", get(list).post(create))
        .route("/leads/new", get(new_form))
        .route("/leads/import", get(import_page).post(import))
        .route("/leads/rules", get(rules_page).post(save_rules))
        .route("/leads/analysis", get(analysis_page))
        .route("/leads/{id}", get(lead_page))
        .route("/leads/{id}/assign", post(assign))
        .route("/leads/{id}/withdraw", post(withdraw))
        .route("/registrations", get(registrations))
        .route(
            "/registrations/{key}/{subject}",
            get(registration_page).post(decide),
        )
        .route("/offers", get(offers))
        .route("/offers/{vendor}/{subject}", get(offer_page).post(respond))
        .route("/deals", get(deals).post(register))
}

/// What the lead part of the inbox shows the user: leads waiting for staff,
/// registrations to decide (staff), offers to answer (everyone).
pub fn inbox_items(
    loc: &Locale,
    read: &guanxi_adapters::store::Read,
    user: &User,
    _me: &guanxi_protocol::NodeId,
) -> Vec<super::format::InboxItem> {
    use super::format::linked;
    use crate::record_index::{self as index, SHOWN, Side};
    use guanxi_protocol::state::Record;
    let mut items = Vec::new();
    if user.role != Role::Partner {
        // Read from the indexes: the first few of each, never every lead.
        let (held, more) = leads::index::held(read, SHOWN).unwrap_or_default();
        let waiting: Vec<(String, String)> = held
            .iter()
            .filter_map(|id| leads::load(read, id).ok().flatten())
            .map(|d| (d.input.customer.company, format!("/leads/{}", d.id)))
            .collect();
        if !waiting.is_empty() {
            items.push(linked("home.leads_waiting", waiting, more));
        }
        let (found, more) = index::find(
            read,
            "registration",
            Side::Own,
            "submitted",
            None,
            None,
            SHOWN,
        )
        .unwrap_or_default();
        let to_decide: Vec<(String, String)> = index::load(read, found)
            .into_iter()
            .filter_map(|(key, subject, r)| match r {
                Record::Registration(reg) => Some((
                    format!("{} ({})", reg.deal.customer.company, reg.partner),
                    format!("/registrations/{key}/{subject}"),
                )),
                _ => None,
            })
            .collect();
        if !to_decide.is_empty() {
            items.push(linked("home.registrations_waiting", to_decide, more));
        }
    }
    // Offers to answer: a partner user's (kept under web:<org>, this node
    // the vendor), or, for staff, those other vendors' daemons sent.
    let org_key = user.partner.as_ref().map(|org| format!("web:{org}"));
    let (found, more) = match &org_key {
        Some(key) => index::find(read, "lead", Side::Own, "offered", Some(key), None, SHOWN),
        None => index::find(read, "lead", Side::Peer, "offered", None, None, SHOWN),
    }
    .unwrap_or_default();
    let to_answer: Vec<(String, String)> = index::load(read, found)
        .into_iter()
        .filter_map(|(_, subject, r)| match r {
            Record::Lead(l) => Some((
                format!(
                    "{} ({} {})",
                    l.offer.customer.company,
                    l.vendor,
                    loc.when(l.offer.accept_by)
                ),
                format!("/offers/{}/{subject}", l.vendor),
            )),
            _ => None,
        })
        .collect();
    if !to_answer.is_empty() {
        items.push(linked("home.offers_waiting", to_answer, more));
    }
    items
}

// ------------------------------------------------------------ lead list

pub struct LeadRow {
    pub id: String,
    pub created: String,
    pub company: String,
    pub territory: String,
    pub product_lines: String,
    pub value: String,
    pub source: String,
    pub stage: &'static str,
    pub partner: String,
    pub hold: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "leads.html")]
struct LeadsPage {
    f: Frame,
    leads: Vec<LeadRow>,
    stage: String,
    stages: Vec<&'static str>,
    /// The link to the next (older) page, when there is one.
    next: Option<String>,
}

/// Up to how many partners the lead page offers as a list to choose from
/// (beyond, the partner's id is typed).
const PARTNER_CHOICES: usize = 200;

/// Groups the analysis chart shows at most (the most offers first).
const CHARTED: usize = 30;

/// Leads on one page of the web list.
const PAGE: usize = 50;

#[derive(Deserialize)]
struct StageQuery {
    stage: Option<String>,
    after: Option<String>,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<StageQuery>, Staff(m): Staff) -> Page {
    let loc = m.loc();
    let stage = q.stage.unwrap_or_default();
    let store = node.store.clone();
    let (filter, after) = (stage.clone(), q.after.clone());
    let page = tokio::task::spawn_blocking(move || {
        let read = store.read()?;
        let filter = Some(filter.as_str()).filter(|s| !s.is_empty());
        leads::page(&read, filter, after.as_deref(), PAGE)
    })
    .await??;
    let (views, next) = page;
    let next = next.map(|id| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        if !stage.is_empty() {
            url.append_pair("stage", &stage);
        }
        url.append_pair("after", &id);
        format!("/leads?{}", url.finish())
    });
    let rows = views
        .into_iter()
        .map(|v| LeadRow {
            id: v.doc.id.clone(),
            created: loc.when(v.doc.created),
            company: v.doc.input.customer.company.clone(),
            territory: format!("{} {}", v.doc.input.country, v.doc.input.region),
            product_lines: v.doc.input.product_lines.join(", "),
            value: loc.maybe_money(&v.doc.input.estimated_value),
            source: [v.doc.input.source.as_str(), v.doc.input.campaign.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" / "),
            stage: v.stage(),
            partner: v.partner().unwrap_or("").to_string(),
            hold: v.doc.hold.map(|h| h.as_str()),
        })
        .collect();
    let mut stages = vec!["unassigned"];
    stages.extend(
        guanxi_protocol::state::LeadStatus::ALL
            .iter()
            .map(|s| s.as_str()),
    );
    Ok(m.page(
        StatusCode::OK,
        LeadsPage {
            f: m.frame(),
            leads: rows,
            stage,
            stages,
            next,
        }
        .render(),
    ))
}

// ------------------------------------------------------------- new lead

#[derive(Template)]
#[template(path = "lead_form.html")]
struct LeadFormPage {
    f: Frame,
    form: LeadForm,
    errors: Vec<FieldError>,
}

impl LeadFormPage {
    fn error_for(&self, field: &str) -> Option<&'static str> {
        self.errors.iter().find(|e| e.field == field).map(|e| e.key)
    }
}

async fn new_form(Staff(m): Staff) -> Page {
    Ok(m.page(
        StatusCode::OK,
        LeadFormPage {
            f: m.frame(),
            form: LeadForm::default(),
            errors: Vec::new(),
        }
        .render(),
    ))
}

#[derive(Deserialize)]
struct LeadSubmit {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: LeadForm,
}

async fn create(
    State(node): State<Arc<Node>>,
    Staff(m): Staff,
    Form(submit): Form<LeadSubmit>,
) -> Page {
    m.csrf(&submit.csrf)?;
    let user = &m.user;
    let input = match submit.form.parse() {
        Ok(i) => i,
        Err(errors) => {
            return Ok(m.page(
                StatusCode::UNPROCESSABLE_ENTITY,
                LeadFormPage {
                    f: m.frame(),
                    form: submit.form,
                    errors,
                }
                .render(),
            ));
        }
    };
    match leads::create(&node, vec![input], &user.username).await {
        Ok(ids) => {
            let id = ids.first().cloned().unwrap_or_default();
            tracing::info!(lead = %id, user = %user.username, "lead created");
            Ok(redirect_with_flash(
                &format!("/leads/{id}"),
                "leads.created",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

// ----------------------------------------------------------- CSV import

#[derive(Template)]
#[template(path = "lead_import.html")]
struct ImportPage {
    f: Frame,
    columns: String,
    errors: Vec<RowError>,
}

async fn import_page(Staff(m): Staff) -> Page {
    Ok(m.page(
        StatusCode::OK,
        ImportPage {
            f: m.frame(),
            columns: intake::CSV_COLUMNS.join(","),
            errors: Vec::new(),
        }
        .render(),
    ))
}

async fn import(State(node): State<Arc<Node>>, Staff(m): Staff, mut multipart: Multipart) -> Page {
    let user = &m.user;
    let mut csrf = String::new();
    let mut file = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                match field.bytes().await {
                    Ok(b) if name == "csrf" => csrf = String::from_utf8_lossy(&b).into_owned(),
                    Ok(b) if name == "file" => file = b.to_vec(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!("lead import: unreadable upload: {e}");
                        return Err(m.error(StatusCode::BAD_REQUEST, "error.upload"));
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::info!("lead import: unreadable upload: {e}");
                return Err(m.error(StatusCode::BAD_REQUEST, "error.upload"));
            }
        }
    }
    m.csrf(&csrf)?;
    let inputs = match intake::parse_csv(&file) {
        Ok(i) => i,
        Err(errors) => {
            return Ok(m.page(
                StatusCode::UNPROCESSABLE_ENTITY,
                ImportPage {
                    f: m.frame(),
                    columns: intake::CSV_COLUMNS.join(","),
                    errors,
                }
                .render(),
            ));
        }
    };
    let count = inputs.len();
    match leads::create(&node, inputs, &user.username).await {
        Ok(_) => {
            tracing::info!(user = %user.username, count, "leads imported");
            Ok(redirect_with_flash("/leads", "leads.imported"))
        }
        Err(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------ lead page

pub struct OfferRow {
    pub partner: String,
    pub channel: &'static str,
    pub offered: String,
    pub accept_by: String,
    pub status: &'static str,
    pub manual: bool,
    pub won: String,
    pub history: Vec<EventRow>,
}

pub struct EventRow {
    pub at: String,
    pub by: String,
    pub kind: String,
    pub status: &'static str,
    pub note: String,
}

fn events(loc: &Locale, history: &[LeadEvent]) -> Vec<EventRow> {
    history
        .iter()
        .map(|e| EventRow {
            at: loc.when(e.at),
            by: e.by.to_string(),
            kind: e.kind.clone(),
            status: e.status.as_str(),
            note: e.note.clone(),
        })
        .collect()
}

pub struct RoundRow {
    pub at: String,
    pub by: String,
    pub partner: String,
    pub steps: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "lead.html")]
struct LeadPage {
    f: Frame,
    id: String,
    form: LeadForm,
    /// The estimated value as people read it.
    value: String,
    stage: &'static str,
    hold: Option<&'static str>,
    offers: Vec<OfferRow>,
    rounds: Vec<RoundRow>,
    partners: Vec<Partner>,
    can_withdraw: bool,
    /// Orders that name this lead: (link, reference, status, total).
    orders: Vec<(String, String, &'static str, String)>,
}

async fn lead_page(State(node): State<Arc<Node>>, Path(id): Path<String>, Staff(m): Staff) -> Page {
    let loc = m.loc();
    let read = node.store.read()?;
    let Some(doc) = leads::load(&read, &id)? else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let view = LeadView::load(&read, doc);
    let offers = view
        .offers
        .iter()
        .map(|(o, l)| OfferRow {
            partner: o.partner.clone(),
            channel: if o.key.starts_with("web:") {
                "leads.channel_web"
            } else {
                "leads.channel_peer"
            },
            offered: loc.when(o.offered_at),
            accept_by: loc.when(o.accept_by),
            status: l.as_ref().map_or("unknown", |l| l.status.as_str()),
            manual: o.manual,
            won: l
                .as_ref()
                .map(|l| loc.maybe_money(&l.won_value))
                .unwrap_or_default(),
            history: l
                .as_ref()
                .map(|l| events(loc, &l.history))
                .unwrap_or_default(),
        })
        .collect();
    let rounds = view
        .doc
        .rounds
        .iter()
        .rev()
        .map(|r| RoundRow {
            at: loc.when(r.at),
            by: r.by.clone(),
            partner: r.partner.clone().unwrap_or_default(),
            steps: r
                .trace
                .iter()
                .map(|s| {
                    (
                        format!("trace.{}", s.code),
                        s.partner.clone().unwrap_or_default(),
                        s.detail.clone(),
                    )
                })
                .collect(),
        })
        .collect();
    let can_withdraw = matches!(view.offers.last(), Some((_, Some(l))) if l.status.is_open());
    let page = LeadPage {
        f: m.frame(),
        id: view.doc.id.clone(),
        form: LeadForm::from_input(&view.doc.input),
        value: loc.maybe_money(&view.doc.input.estimated_value),
        stage: view.stage(),
        hold: view.doc.hold.map(|h| h.as_str()),
        offers,
        rounds,
        // A choice when the directory is short; a typed id when it is long.
        partners: directory::page(&read, None, PARTNER_CHOICES)
            .map(|(list, more)| if more.is_some() { Vec::new() } else { list })
            .unwrap_or_default(),
        can_withdraw,
        orders: crate::orders::for_lead(
            &read,
            &node.identity.id,
            &view
                .doc
                .offers
                .iter()
                .map(|o| o.subject.clone())
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default(),
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

#[derive(Deserialize)]
struct AssignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    partner: String,
}

async fn assign(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Staff(m): Staff,
    Form(form): Form<AssignForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    let user = &m.user;
    let result = leads::assign(&node, &id, form.partner.trim(), &user.username).await;
    m.outcome(result, format!("/leads/{id}"), "leads.assigned")
}

#[derive(Deserialize)]
struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

async fn withdraw(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Staff(m): Staff,
    Form(form): Form<WithdrawForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    m.confirmed(&form.confirm)?;
    let user = &m.user;
    let result = leads::withdraw(&node, &id, &form.reason, &user.username).await;
    m.outcome(result, format!("/leads/{id}"), "leads.withdrawn")
}

// ---------------------------------------------------------------- rules

pub struct RuleRow {
    pub index: usize,
    pub name: String,
    pub countries: String,
    pub product_lines: String,
    pub tiers: String,
    pub capacity: String,
    pub weighted: bool,
    pub weights: String,
}

#[derive(Template)]
#[template(path = "lead_rules.html")]
struct RulesPage {
    f: Frame,
    offer_hours: String,
    rows: Vec<RuleRow>,
    errors: Vec<(String, String)>,
}

fn rule_rows(rules: &Rules) -> Vec<RuleRow> {
    let mut rows: Vec<RuleRow> = rules
        .rules
        .iter()
        .enumerate()
        .map(|(index, r)| RuleRow {
            index,
            name: r.name.clone(),
            countries: r.countries.join(", "),
            product_lines: r.product_lines.join(", "),
            tiers: r.tiers.join(", "),
            capacity: r.capacity.to_string(),
            weighted: r.strategy == Strategy::Weighted,
            weights: r
                .weights
                .iter()
                .map(|(p, w)| format!("{p}={w}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    rows.push(RuleRow {
        index: rows.len(),
        name: String::new(),
        countries: String::new(),
        product_lines: String::new(),
        tiers: String::new(),
        capacity: "0".into(),
        weighted: false,
        weights: String::new(),
    });
    rows
}

async fn rules_page(State(node): State<Arc<Node>>, Staff(m): Staff) -> Page {
    let rules = node.store.read().and_then(|r| leads::rules(&r))?;
    Ok(m.page(
        StatusCode::OK,
        RulesPage {
            f: m.frame(),
            offer_hours: rules.offer_hours.to_string(),
            rows: rule_rows(&rules),
            errors: Vec::new(),
        }
        .render(),
    ))
}

/// Reads the rules form: `offer_hours`, then per row `name_N`,
/// `countries_N`, `product_lines_N`, `tiers_N`, `capacity_N`, `strategy_N`,
/// `weights_N` (`partner=weight, ...`). Rows with an empty name are dropped.
fn parse_rules(fields: &HashMap<String, String>) -> Result<Rules, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let get = |k: &str| {
        fields
            .get(k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let offer_hours = get("offer_hours").parse::<u32>().unwrap_or_else(|_| {
        errors.push((
            "offer_hours".into(),
            "must be a whole number of hours".into(),
        ));
        0
    });
    let mut rules = Vec::new();
    for i in 0..100 {
        let Some(name) = fields.get(&format!("name_{i}")) else {
            break;
        };
        let name = name.trim().to_string();
        if name.is_empty() {
            continue;
        }
        let capacity = get(&format!("capacity_{i}"));
        let capacity = if capacity.is_empty() {
            0
        } else {
            capacity.parse::<u32>().unwrap_or_else(|_| {
                errors.push((
                    format!("rules[{i}].capacity"),
                    "must be a whole number".into(),
                ));
                0
            })
        };
        let mut weights = BTreeMap::new();
        for pair in intake::split_list(&get(&format!("weights_{i}"))) {
            match pair
                .split_once('=')
                .map(|(p, w)| (p.trim(), w.trim().parse::<u32>()))
            {
                Some((p, Ok(w))) if !p.is_empty() => {
                    weights.insert(p.to_string(), w);
                }
                _ => errors.push((
                    format!("rules[{i}].weights"),
                    format!("{pair:?} is not partner=weight"),
                )),
            }
        }
        rules.push(Rule {
            name,
            countries: intake::split_list(&get(&format!("countries_{i}")).to_uppercase()),
            product_lines: intake::split_list(&get(&format!("product_lines_{i}"))),
            tiers: intake::split_list(&get(&format!("tiers_{i}"))),
            capacity,
            strategy: if get(&format!("strategy_{i}")) == "weighted" {
                Strategy::Weighted
            } else {
                Strategy::RoundRobin
            },
            weights,
        });
    }
    let rules = Rules { offer_hours, rules };
    errors.extend(rules.check());
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

async fn save_rules(
    State(node): State<Arc<Node>>,
    Staff(m): Staff,
    Form(fields): Form<HashMap<String, String>>,
) -> Page {
    m.csrf(fields.get("csrf").map_or("", String::as_str))?;
    match parse_rules(&fields) {
        Ok(rules) => {
            leads::save_rules(&node, rules).await?;
            Ok(redirect_with_flash("/leads/rules", "leads.rules_saved"))
        }
        Err(errors) => {
            // Show what was typed, with the errors.
            let mut shown = Rules::default();
            for i in 0..100 {
                let Some(name) = fields.get(&format!("name_{i}")) else {
                    break;
                };
                let get = |k: &str| fields.get(&format!("{k}_{i}")).cloned().unwrap_or_default();
                shown.rules.push(Rule {
                    name: name.clone(),
                    countries: intake::split_list(&get("countries")),
                    product_lines: intake::split_list(&get("product_lines")),
                    tiers: intake::split_list(&get("tiers")),
                    capacity: get("capacity").trim().parse().unwrap_or(0),
                    strategy: if get("strategy") == "weighted" {
                        Strategy::Weighted
                    } else {
                        Strategy::RoundRobin
                    },
                    weights: BTreeMap::new(),
                });
            }
            let mut rows = rule_rows(&shown);
            rows.pop();
            for r in rows.iter_mut() {
                r.weights = fields
                    .get(&format!("weights_{}", r.index))
                    .cloned()
                    .unwrap_or_default();
            }
            Ok(m.page(
                StatusCode::UNPROCESSABLE_ENTITY,
                RulesPage {
                    f: m.frame(),
                    offer_hours: fields.get("offer_hours").cloned().unwrap_or_default(),
                    rows,
                    errors,
                }
                .render(),
            ))
        }
    }
}

// ------------------------------------------------------------- analysis

/// One bar pair of the chart.
pub struct Bar {
    pub label: String,
    pub y: u32,
    pub offered: u32,
    pub won: u32,
}

#[derive(Template)]
#[template(path = "lead_analysis.html")]
struct AnalysisPage {
    f: Frame,
    group: &'static str,
    from: String,
    to: String,
    rows: Vec<Row>,
    total: Row,
    bars: Vec<Bar>,
    height: u32,
    error: Option<String>,
}

impl AnalysisPage {
    fn rate(&self, row: &Row) -> String {
        row.win_rate_permille
            .map(|p| self.f.loc.permille(i64::try_from(p).unwrap_or(i64::MAX)))
            .unwrap_or_else(|| "–".into())
    }

    fn median(&self, row: &Row) -> String {
        row.median_accept_ms
            .map(|ms| self.f.loc.duration(ms))
            .unwrap_or_else(|| "–".into())
    }

    fn values(&self, row: &Row) -> String {
        row.won_value
            .iter()
            .filter_map(|(c, a)| c.parse().ok().map(|c| self.f.loc.amount(*a, &c)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Deserialize)]
pub struct AnalysisQuery {
    pub group: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The analysis grouping and its period [from, to) in UTC milliseconds.
pub type AnalysisParams = (GroupBy, Option<i64>, Option<i64>);

/// Reads the query: group (default partner), from/to dates (`YYYY-MM-DD`,
/// UTC, `to` inclusive). Errors name the parameter.
pub fn analysis_params(q: &AnalysisQuery) -> Result<AnalysisParams, (&'static str, String)> {
    let group = match q.group.as_deref().filter(|s| !s.is_empty()) {
        None => GroupBy::Partner,
        Some(g) => GroupBy::parse(g).ok_or((
            "group",
            format!("{g:?} is not partner, source, campaign or month"),
        ))?,
    };
    let day = |name: &'static str,
               s: &Option<String>,
               add_day: bool|
     -> Result<Option<i64>, (&'static str, String)> {
        match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(text) => {
                let date: jiff::civil::Date = text
                    .parse()
                    .map_err(|_| (name, format!("{text:?} is not a date like 2026-11-30")))?;
                let date = if add_day {
                    date.tomorrow().map_err(|e| (name, e.to_string()))?
                } else {
                    date
                };
                let ts: jiff::Timestamp = format!("{date}T00:00:00Z")
                    .parse()
                    .map_err(|e: jiff::Error| (name, e.to_string()))?;
                Ok(Some(ts.as_millisecond()))
            }
        }
    };
    Ok((group, day("from", &q.from, false)?, day("to", &q.to, true)?))
}

async fn analysis_page(
    State(node): State<Arc<Node>>,
    Query(q): Query<AnalysisQuery>,
    Staff(m): Staff,
) -> Page {
    let (params, error) = match analysis_params(&q) {
        Ok(p) => (p, None),
        Err((field, message)) => (
            (GroupBy::Partner, None, None),
            Some(format!("{field}: {message}")),
        ),
    };
    let (group, from, to) = params;
    let kept = node
        .reading(move |r| leads::aggregates::query(r, group, from, to))
        .await;
    let (rows, total, error) = match kept {
        Ok(Ok((rows, total))) => (rows, total, error),
        Ok(Err(e)) => (Vec::new(), Row::default(), Some(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let max = rows.iter().map(|r| r.offered).max().unwrap_or(0).max(1);
    let scale = |n: u64| u32::try_from(n * 400 / max).unwrap_or(400);
    // The chart shows the groups with the most offers (the table has all).
    let mut charted: Vec<&Row> = rows.iter().collect();
    if charted.len() > CHARTED {
        charted.sort_by(|a, b| b.offered.cmp(&a.offered).then(a.key.cmp(&b.key)));
        charted.truncate(CHARTED);
    }
    let bars: Vec<Bar> = charted
        .into_iter()
        .enumerate()
        .map(|(i, r)| Bar {
            label: r.key.clone(),
            y: 10 + 34 * i as u32,
            offered: scale(r.offered),
            won: scale(r.won),
        })
        .collect();
    let page = AnalysisPage {
        f: m.frame(),
        group: params.0.as_str(),
        from: q.from.clone().unwrap_or_default(),
        to: q.to.clone().unwrap_or_default(),
        height: 20 + 34 * bars.len() as u32,
        bars,
        rows,
        total,
        error,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

// ------------------------------------------------- registrations (vendor)

pub struct RegistrationRow {
    pub link: String,
    pub partner: String,
    pub company: String,
    pub product_lines: String,
    pub registered: String,
    pub status: &'static str,
    pub conflicts: usize,
}

#[derive(Template)]
#[template(path = "registrations.html")]
struct RegistrationsPage {
    f: Frame,
    rows: Vec<RegistrationRow>,
    next: Option<String>,
}

fn today() -> String {
    jiff::Timestamp::from_millisecond(now_ms())
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn partner_label(key: &str, view: &RegistrationView) -> String {
    key.strip_prefix("web:")
        .map_or_else(|| view.reg.partner.to_string(), str::to_string)
}

async fn registrations(
    State(node): State<Arc<Node>>,
    Query(q): Query<ListQuery>,
    Staff(m): Staff,
) -> Page {
    let loc = m.loc().clone();
    let user = &m.user;
    let (who, me, cursor, today) = (user.clone(), node.identity.id.clone(), q.cursor(), today());
    let read = node
        .reading(move |read| {
            let (list, next) =
                leads::registrations_page(read, &who, &me, true, cursor.as_ref(), LIST_PAGE)?;
            let rows = list
                .iter()
                .map(|v| RegistrationRow {
                    link: format!("/registrations/{}/{}", v.key, v.subject),
                    partner: partner_label(&v.key, v),
                    company: v.reg.deal.customer.company.clone(),
                    product_lines: v.reg.deal.product_lines.join(", "),
                    registered: loc.when(v.reg.registered_at),
                    status: v.reg.status.as_str(),
                    conflicts: leads::registration_conflicts(
                        read, &me, &v.key, &v.subject, &v.reg, &today,
                    )
                    .map(|c| c.len())
                    .unwrap_or(0),
                })
                .collect::<Vec<_>>();
            Ok((rows, next))
        })
        .await;
    let (rows, next) = read?;
    Ok(m.page(
        StatusCode::OK,
        RegistrationsPage {
            f: m.frame(),
            rows,
            next: next_link("/registrations", Direction::Received, next),
        }
        .render(),
    ))
}

#[derive(Template)]
#[template(path = "registration.html")]
struct RegistrationPage {
    f: Frame,
    action: String,
    partner: String,
    reg: guanxi_protocol::state::Registration,
    registered: String,
    decided: String,
    value: String,
    conflicts: Vec<conflicts::Conflict>,
}

async fn registration_page(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    Staff(m): Staff,
) -> Page {
    let loc = m.loc();
    let user = &m.user;
    let read = node.store.read()?;
    let me = node.identity.id.clone();
    let found = leads::registration(&read, user, &me, true, &key, &subject).unwrap_or_default();
    let Some(view) = found else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let conflicts = leads::registration_conflicts(&read, &me, &key, &subject, &view.reg, &today())
        .unwrap_or_default();
    let page = RegistrationPage {
        f: m.frame(),
        action: format!("/registrations/{key}/{subject}"),
        partner: partner_label(&key, &view),
        registered: loc.when(view.reg.registered_at),
        decided: view
            .reg
            .decided_at
            .map(|at| loc.when(at))
            .unwrap_or_default(),
        value: loc.maybe_money(&view.reg.deal.estimated_value),
        reg: view.reg,
        conflicts,
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    exclusive_until: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
}

async fn decide(
    State(node): State<Arc<Node>>,
    Path((key, subject)): Path<(String, String)>,
    Staff(m): Staff,
    Form(form): Form<DecisionForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    let back = format!("/registrations/{key}/{subject}");
    let approve = form.decision == "approve";
    let result = leads::decide_registration(
        &node,
        &key,
        &subject,
        approve,
        Some(form.exclusive_until).filter(|s| !s.trim().is_empty()),
        Some(form.reason).filter(|s| !s.trim().is_empty()),
        form.note,
    )
    .await;
    m.outcome(result, back, "registrations.decided")
}

// ------------------------------------------------- offers (partner side)

pub struct IncomingRow {
    pub link: String,
    pub vendor: String,
    pub company: String,
    pub territory: String,
    pub product_lines: String,
    pub offered: String,
    pub accept_by: String,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "offers.html")]
struct OffersPage {
    f: Frame,
    rows: Vec<IncomingRow>,
    /// The link to the next page, when there is one.
    next: Option<String>,
}

fn vendor_of(i: &Incoming) -> String {
    i.lead.vendor.to_string()
}

#[derive(Deserialize)]
struct AfterQuery {
    after: Option<String>,
}

async fn offers(State(node): State<Arc<Node>>, Query(q): Query<AfterQuery>, m: Member) -> Page {
    let loc = m.loc();
    let user = &m.user;
    let after = q
        .after
        .as_deref()
        .and_then(|a| a.rsplit_once('/'))
        .map(|(k, s)| (k.to_string(), s.to_string()));
    let (store, me, who) = (node.store.clone(), node.identity.id.clone(), user.clone());
    let page = tokio::task::spawn_blocking(move || {
        let read = store.read()?;
        leads::incoming_page(&read, &who, &me, after.as_ref(), PAGE)
    })
    .await??;
    let (list, next) = page;
    let next = next.map(|(k, s)| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        url.append_pair("after", &format!("{k}/{s}"));
        format!("/offers?{}", url.finish())
    });
    let rows = list
        .iter()
        .map(|i| IncomingRow {
            link: format!("/offers/{}/{}", vendor_of(i), i.subject),
            vendor: vendor_of(i),
            company: i.lead.offer.customer.company.clone(),
            territory: format!("{} {}", i.lead.offer.country, i.lead.offer.region),
            product_lines: i.lead.offer.product_lines.join(", "),
            offered: loc.when(i.lead.offered_at),
            accept_by: loc.when(i.lead.offer.accept_by),
            status: i.lead.status.as_str(),
        })
        .collect();
    Ok(m.page(
        StatusCode::OK,
        OffersPage {
            f: m.frame(),
            rows,
            next,
        }
        .render(),
    ))
}

#[derive(Template)]
#[template(path = "offer.html")]
struct OfferPage {
    f: Frame,
    action: String,
    vendor: String,
    lead: guanxi_protocol::state::Lead,
    offered: String,
    accept_by: String,
    value: String,
    won: String,
    history: Vec<EventRow>,
    can_answer: bool,
    can_progress: bool,
    /// This node's answers the vendor has not confirmed yet.
    pending: usize,
}

async fn offer_page(
    State(node): State<Arc<Node>>,
    Path((vendor, subject)): Path<(String, String)>,
    m: Member,
) -> Page {
    let loc = m.loc();
    let user = &m.user;
    let read = node.store.read()?;
    let Some(found) = leads::incoming_one(&read, user, &node.identity.id, &vendor, &subject)?
    else {
        return Err(m.error(StatusCode::NOT_FOUND, "error.not_found"));
    };
    let l = &found.lead;
    let status = l.status;
    let page = OfferPage {
        f: m.frame(),
        action: format!("/offers/{vendor}/{subject}"),
        vendor: vendor.clone(),
        offered: loc.when(l.offered_at),
        accept_by: loc.when(l.offer.accept_by),
        value: loc.maybe_money(&l.offer.estimated_value),
        won: loc.maybe_money(&l.won_value),
        history: events(loc, &l.history),
        can_answer: status == guanxi_protocol::state::LeadStatus::Offered,
        can_progress: status.is_in_progress(),
        lead: found.lead,
        pending: super::pending_of(&node, &vendor, &subject),
    };
    Ok(m.page(StatusCode::OK, page.render()))
}

/// The partner's answer as typed in the offer page's forms.
#[derive(Deserialize, Default)]
pub struct AnswerForm {
    #[serde(default)]
    pub csrf: String,
    /// `accept`, `decline` or `progress`.
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub note: String,
    /// Decline reason: no_capacity, out_of_territory, not_a_fit, duplicate, other.
    #[serde(default)]
    pub reason: String,
    /// Progress: contacted, qualified, won, lost.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub won_amount: String,
    #[serde(default)]
    pub won_currency: String,
    #[serde(default)]
    pub won_on: String,
    #[serde(default)]
    pub lost_reason: String,
    /// The confirmation box of a decline (web only).
    #[serde(default)]
    pub confirm: String,
}

/// Turns the answer form into a protocol message (with the wire's checks).
pub fn answer_message(form: &AnswerForm) -> Result<guanxi_protocol::messages::Message, Refusal> {
    let bad = |m: String| Refusal {
        code: ReasonCode::BadBody,
        message: m,
    };
    match form.action.as_str() {
        "accept" => leads::message("lead.accept", json!({"note": form.note})),
        "decline" => leads::message(
            "lead.decline",
            json!({"reason": if form.reason.is_empty() { "other" } else { form.reason.as_str() }, "note": form.note}),
        ),
        "progress" => {
            let won = form.status == "won";
            let lost = form.status == "lost";
            let won_value = if won {
                let currency = form
                    .won_currency
                    .trim()
                    .to_ascii_uppercase()
                    .parse::<Currency>()
                    .map_err(|e| bad(format!("won_currency: {e}")))?;
                let m = Money::parse_decimal(&form.won_amount, currency)
                    .map_err(|e| bad(format!("won_amount: {e}")))?;
                json!({"amount": m.amount, "currency": m.currency})
            } else {
                serde_json::Value::Null
            };
            leads::message(
                "lead.update",
                json!({
                    "status": form.status,
                    "won_value": won_value,
                    "won_on": if won { json!(form.won_on.trim()) } else { serde_json::Value::Null },
                    "lost_reason": if lost { json!(form.lost_reason.trim()) } else { serde_json::Value::Null },
                    "note": form.note,
                }),
            )
        }
        other => Err(bad(format!(
            "action {other:?} is not accept, decline or progress"
        ))),
    }
}

async fn respond(
    State(node): State<Arc<Node>>,
    Path((vendor, subject)): Path<(String, String)>,
    m: Member,
    Form(form): Form<AnswerForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    if form.action == "decline" {
        m.confirmed(&form.confirm)?;
    }
    let user = &m.user;
    let back = format!("/offers/{vendor}/{subject}");
    let message = match answer_message(&form) {
        Ok(message) => message,
        Err(r) => return Ok(m.refused(&r, back)),
    };
    let result = leads::respond(&node, user, &vendor, &subject, message).await;
    m.outcome(result, back, "offers.sent")
}

// --------------------------------------------------- deals (partner side)

pub struct DealRow {
    pub vendor: String,
    pub company: String,
    pub product_lines: String,
    pub registered: String,
    pub status: &'static str,
    pub exclusive_until: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "deals.html")]
struct DealsPage {
    f: Frame,
    rows: Vec<DealRow>,
    vendors: Vec<String>,
    next: Option<String>,
}

/// A deal registration as typed in.
#[derive(Deserialize, Default, Clone)]
pub struct DealForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(flatten)]
    pub lead: LeadForm,
    #[serde(default)]
    pub expected_close: String,
}

/// The vendors the user can register deals with.
fn vendors_for(node: &Node, user: &User) -> Vec<String> {
    match user.role {
        Role::Partner => vec![node.identity.id.to_string()],
        _ => node
            .config()
            .peers
            .iter()
            .filter(|p| p.enabled)
            .map(|p| p.id.to_string())
            .collect(),
    }
}

/// Turns the deal form into a `lead.register` body (consent is not asked:
/// the partner registers its own customer).
pub fn deal_from_form(form: &DealForm) -> Result<LeadRegister, Refusal> {
    let mut lead = form.lead.clone();
    lead.consent = "yes".into();
    let input = lead.parse().map_err(|errors| Refusal {
        code: ReasonCode::BadBody,
        message: errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let close = form.expected_close.trim();
    let expected_close = if close.is_empty() {
        None
    } else {
        Some(close.parse().map_err(|e: String| Refusal {
            code: ReasonCode::BadBody,
            message: format!("expected_close: {e}"),
        })?)
    };
    Ok(LeadRegister {
        customer: Customer { ..input.customer },
        country: input.country,
        region: input.region,
        product_lines: input.product_lines,
        estimated_value: input.estimated_value,
        expected_close,
        notes: input.notes,
    })
}

fn deal_rows(loc: &Locale, views: &[RegistrationView]) -> Vec<DealRow> {
    views
        .iter()
        .map(|v| DealRow {
            vendor: v.reg.vendor.to_string(),
            company: v.reg.deal.customer.company.clone(),
            product_lines: v.reg.deal.product_lines.join(", "),
            registered: loc.when(v.reg.registered_at),
            status: v.reg.status.as_str(),
            exclusive_until: v
                .reg
                .exclusive_until
                .as_ref()
                .map(|d| d.as_str().to_string())
                .unwrap_or_default(),
            reason: v.reg.reason.clone().unwrap_or_default(),
        })
        .collect()
}

async fn deals(State(node): State<Arc<Node>>, Query(q): Query<ListQuery>, m: Member) -> Page {
    let user = &m.user;
    let (who, me, cursor) = (user.clone(), node.identity.id.clone(), q.cursor());
    let page = node
        .reading(move |read| {
            leads::registrations_page(read, &who, &me, false, cursor.as_ref(), LIST_PAGE)
        })
        .await;
    let (list, next) = page?;
    Ok(m.page(
        StatusCode::OK,
        DealsPage {
            f: m.frame(),
            rows: deal_rows(m.loc(), &list),
            vendors: vendors_for(&node, user),
            next: next_link("/deals", Direction::Received, next),
        }
        .render(),
    ))
}

async fn register(State(node): State<Arc<Node>>, m: Member, Form(form): Form<DealForm>) -> Page {
    m.csrf(&form.csrf)?;
    let user = &m.user;
    let deal = match deal_from_form(&form) {
        Ok(d) => d,
        Err(r) => return Ok(m.refused(&r, "/deals".into())),
    };
    let result = leads::register(&node, user, form.vendor.trim(), deal)
        .await
        .map(|r| r.map(|_subject| ()));
    m.outcome(result, "/deals".into(), "deals.registered")
}
