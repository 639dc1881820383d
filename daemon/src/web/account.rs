//! The signed-in user's own settings: where and how notifications are
//! mailed (address, immediate or daily digest, language) and the time zone
//! times are shown in.

use super::access::{Member, Page};
use super::{Frame, redirect_with_flash};
use crate::accounts::{self, MailChoice};
use crate::node::Node;
use askama::Template;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// The account routes.
pub fn routes() -> Router<Arc<Node>> {
    Router::new().route("/account", get(settings_page).post(save_settings))
}

/// The settings as typed.
#[derive(Deserialize, Default, Clone)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub mail: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct AccountPage {
    f: Frame,
    form: SettingsForm,
    errors: Vec<(&'static str, &'static str)>,
    /// Where times are shown now (the zone in force, chosen or not).
    zone_now: String,
}

impl AccountPage {
    fn error_for(&self, field: &str) -> Option<&'static str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, e)| *e)
    }
}

fn respond(
    m: &Member,
    status: StatusCode,
    form: SettingsForm,
    errors: Vec<(&'static str, &'static str)>,
) -> Page {
    Ok(m.page(
        status,
        AccountPage {
            f: m.frame(),
            form,
            errors,
            zone_now: m.loc().zone().to_string(),
        }
        .render(),
    ))
}

async fn settings_page(m: Member) -> Page {
    let u = &m.user;
    let form = SettingsForm {
        csrf: String::new(),
        email: u.email.clone(),
        time_zone: u.time_zone.clone(),
        language: u.language.clone(),
        mail: u.mail.name().to_string(),
    };
    respond(&m, StatusCode::OK, form, Vec::new())
}

/// An e-mail address a mail server will take: one `@` with something on
/// both sides, a dot in the domain, no spaces or angle brackets, at most
/// 254 characters. (Whether it reaches someone only a mail can tell.)
pub fn plausible_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>(),;:\"[]\\".contains(c))
}

async fn save_settings(
    State(node): State<Arc<Node>>,
    m: Member,
    Form(form): Form<SettingsForm>,
) -> Page {
    m.csrf(&form.csrf)?;
    let mut errors = Vec::new();
    let email = form.email.trim().to_string();
    if !email.is_empty() && !plausible_email(&email) {
        errors.push(("email", "error.email"));
    }
    let zone = form.time_zone.trim().to_string();
    if !zone.is_empty() && jiff::tz::TimeZone::get(&zone).is_err() {
        errors.push(("time_zone", "error.time_zone"));
    }
    let language = form.language.trim().to_string();
    if !["", "en", "zh-TW"].contains(&language.as_str()) {
        errors.push(("language", "error.choose"));
    }
    let mail = MailChoice::from_name(form.mail.trim());
    if mail.is_none() {
        errors.push(("mail", "error.choose"));
    }
    let Some(mail) = mail.filter(|_| errors.is_empty()) else {
        return respond(&m, StatusCode::UNPROCESSABLE_ENTITY, form, errors);
    };
    accounts::update_user(&node.engine, &m.user.username, move |u| {
        u.email = email.clone();
        u.time_zone = zone.clone();
        u.language = language.clone();
        u.mail = mail;
    })
    .await?;
    Ok(redirect_with_flash("/account", "settings.saved"))
}

#[cfg(test)]
mod tests {
    use super::plausible_email;

    #[test]
    fn addresses_that_a_mail_server_would_take() {
        for ok in ["mei@globex.example", "a.b+c@x.co"] {
            assert!(plausible_email(ok), "{ok}");
        }
        for bad in [
            "",
            "mei",
            "@x.co",
            "mei@",
            "mei@x",
            "mei@@x.co",
            "m ei@x.co",
            "mei@x.co>",
            "a@b@c.d",
            "m@.x.co",
        ] {
            assert!(!plausible_email(bad), "{bad}");
        }
    }
}
