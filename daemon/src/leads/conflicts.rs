//! Deal registration conflicts: is this registration's end customer already
//! somebody's? Two deals clash when they name the same end customer — same
//! normalized company name, same company e-mail domain, or same phone number —
//! and have at least one product line in common.

use guanxi_protocol::messages::Customer;
use serde::Serialize;

/// Legal-form words dropped when comparing company names.
const LEGAL_FORMS: &[&str] = &[
    "股份有限公司",
    "有限公司",
    "公司",
    "incorporated",
    "corporation",
    "company",
    "limited",
    "gmbh",
    "corp",
    "inc",
    "ltd",
    "llc",
    "plc",
    "co",
    "ag",
    "sa",
    "bv",
    "kk",
];

/// E-mail domains shared by unrelated people: never a match on their own.
const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "yahoo.com.tw",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "icloud.com",
    "qq.com",
    "163.com",
    "proton.me",
];

/// The company name reduced for comparison: lowercase letters and digits
/// (any script), legal-form words removed.
pub fn company_key(name: &str) -> String {
    let lower = name.to_lowercase();
    let mut words: Vec<String> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    while words.len() > 1
        && words
            .last()
            .is_some_and(|w| LEGAL_FORMS.contains(&w.as_str()))
    {
        words.pop();
    }
    let mut joined = words.concat();
    for form in LEGAL_FORMS.iter().filter(|f| !f.is_ascii()) {
        if let Some(stripped) = joined.strip_suffix(form)
            && !stripped.is_empty()
        {
            joined = stripped.to_string();
            break;
        }
    }
    joined
}

/// The company e-mail domain, lowercase; `None` for free-mail domains.
pub fn email_domain(email: &str) -> Option<String> {
    let domain = email.trim().rsplit_once('@')?.1.to_lowercase();
    (!domain.is_empty() && !FREE_MAIL.contains(&domain.as_str())).then_some(domain)
}

/// The phone number's last eight digits (ignoring country codes and
/// punctuation); `None` when it has fewer than seven digits.
pub fn phone_key(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return None;
    }
    Some(digits[digits.len().saturating_sub(8)..].to_string())
}

/// What a customer is found by in the indexes (`c:` company, `d:` e-mail
/// domain, `p:` phone): two deals can clash only when they share one.
pub fn match_keys(customer: &Customer) -> Vec<String> {
    let mut keys = Vec::new();
    let company = company_key(&customer.company);
    if !company.is_empty() {
        keys.push(format!("c:{company}"));
    }
    if let Some(d) = email_domain(&customer.email) {
        keys.push(format!("d:{d}"));
    }
    if let Some(p) = phone_key(&customer.phone) {
        keys.push(format!("p:{p}"));
    }
    keys
}

/// Another deal a registration is compared with.
pub struct Other<'a> {
    /// `lead` or `registration`.
    pub what: &'static str,
    /// Where staff can look at it.
    pub link: String,
    pub label: String,
    pub customer: &'a Customer,
    pub product_lines: &'a [String],
}

/// A clash found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub what: &'static str,
    pub link: String,
    pub label: String,
    /// `company`, `email_domain`, `phone`: what matched.
    pub matched_on: Vec<&'static str>,
    pub product_lines: Vec<String>,
}

/// The deals among `others` that clash with (`customer`, `lines`).
pub fn find(customer: &Customer, lines: &[String], others: &[Other<'_>]) -> Vec<Conflict> {
    let company = company_key(&customer.company);
    let domain = email_domain(&customer.email);
    let phone = phone_key(&customer.phone);
    let mut found = Vec::new();
    for o in others {
        let common: Vec<String> = lines
            .iter()
            .filter(|l| o.product_lines.iter().any(|m| m.eq_ignore_ascii_case(l)))
            .cloned()
            .collect();
        if common.is_empty() {
            continue;
        }
        let mut matched_on = Vec::new();
        if !company.is_empty() && company == company_key(&o.customer.company) {
            matched_on.push("company");
        }
        if domain.is_some() && domain == email_domain(&o.customer.email) {
            matched_on.push("email_domain");
        }
        if phone.is_some() && phone == phone_key(&o.customer.phone) {
            matched_on.push("phone");
        }
        if !matched_on.is_empty() {
            found.push(Conflict {
                what: o.what,
                link: o.link.clone(),
                label: o.label.clone(),
                matched_on,
                product_lines: common,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(company: &str, email: &str, phone: &str) -> Customer {
        Customer {
            company: company.into(),
            contact: String::new(),
            email: email.into(),
            phone: phone.into(),
        }
    }

    #[test]
    fn names_domains_and_phones_are_normalized() {
        assert_eq!(company_key("Contoso, Ltd."), company_key("CONTOSO LTD"));
        assert_eq!(
            company_key("台灣康托索股份有限公司"),
            company_key("台灣康托索公司")
        );
        assert_ne!(company_key("Contoso"), company_key("Contoso Labs"));
        assert_eq!(company_key("Co"), "co");
        assert_eq!(email_domain("A@Contoso.TW"), Some("contoso.tw".into()));
        assert_eq!(email_domain("someone@gmail.com"), None);
        assert_eq!(phone_key("+886 2 2345-6789"), phone_key("02-23456789"));
        assert_eq!(phone_key("123"), None);
    }

    #[test]
    fn a_clash_needs_the_same_customer_and_a_common_line() {
        let lines = vec!["cnc".to_string()];
        let other_lines = vec!["CNC".to_string(), "laser".to_string()];
        let laser = vec!["laser".to_string()];
        let by_domain = customer("Contoso Taiwan", "buyer@contoso.tw", "");
        let unrelated = customer("Fabrikam", "x@gmail.com", "");
        let others = [
            Other {
                what: "lead",
                link: "/leads/1".into(),
                label: "1".into(),
                customer: &by_domain,
                product_lines: &other_lines,
            },
            Other {
                what: "lead",
                link: "/leads/2".into(),
                label: "2".into(),
                customer: &by_domain,
                product_lines: &laser,
            },
            Other {
                what: "registration",
                link: "/registrations/x".into(),
                label: "x".into(),
                customer: &unrelated,
                product_lines: &other_lines,
            },
        ];
        let found = find(&customer("Contoso", "it@contoso.tw", ""), &lines, &others);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].link, "/leads/1");
        assert_eq!(found[0].matched_on, vec!["email_domain"]);
        assert_eq!(found[0].product_lines, vec!["cnc"]);
    }
}
