//! Lead distribution rules and the choice of a partner: pure functions over
//! the lead, the partner directory and counts, so that they can be tested
//! over random inputs and explained step by step (the rule trace).
//!
//! The first rule whose countries and product lines match the lead applies
//! (no rules at all: every partner, round robin, no cap). Within it a partner
//! is eligible when it was not offered this lead before, is in a working
//! stage (onboarding, active, strategic, at risk), can be reached (a peer
//! daemon or at least one web user), has one of the rule's tiers, covers the
//! lead's territory (same country; same region unless either is empty), and
//! holds fewer open leads than the rule's capacity. Among the eligible,
//! round robin takes the next partner id after the last one chosen by the
//! rule; by weight, the partner with the lowest (offers so far + 1) / weight.

use super::intake::LeadInput;
use crate::directory::{Partner, Stage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How a rule chooses among eligible partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    Weighted,
}

/// One distribution rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// ISO country codes the rule covers; empty: every country.
    pub countries: Vec<String>,
    /// Product lines the rule covers (any in common); empty: every line.
    pub product_lines: Vec<String>,
    /// Partner tiers that may receive (case-insensitive); empty: every tier.
    pub tiers: Vec<String>,
    /// Most open leads (offered or in progress) per partner; 0: no cap.
    pub capacity: u32,
    pub strategy: Strategy,
    /// Weight per partner id for [`Strategy::Weighted`]; missing or 0: never.
    pub weights: BTreeMap<String, u32>,
}

/// The distribution settings, kept in the store and edited by staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Hours a partner has to accept an offer.
    pub offer_hours: u32,
    pub rules: Vec<Rule>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            offer_hours: 72,
            rules: Vec::new(),
        }
    }
}

/// Longest offer window, in hours (90 days).
pub const MAX_OFFER_HOURS: u32 = 24 * 90;

impl Rules {
    /// Every problem with the rules, as (field path, English message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.offer_hours == 0 || self.offer_hours > MAX_OFFER_HOURS {
            errors.push((
                "offer_hours".into(),
                format!("must be 1 to {MAX_OFFER_HOURS} hours"),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}].{f}");
            if r.name.trim().is_empty() || r.name.chars().count() > 100 {
                errors.push((at("name"), "must be 1 to 100 characters".into()));
            } else if !names.insert(r.name.trim().to_lowercase()) {
                errors.push((at("name"), format!("rule name {:?} is used twice", r.name)));
            }
            for c in &r.countries {
                if !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())) {
                    errors.push((at("countries"), format!("{c:?} is not a code like TW")));
                }
            }
            if r.strategy == Strategy::Weighted && r.weights.values().all(|w| *w == 0) {
                errors.push((
                    at("weights"),
                    "a weighted rule needs at least one partner with a weight above 0".into(),
                ));
            }
        }
        errors
    }
}

/// What the rules remember between choices: per rule, the last partner
/// chosen (round robin) and how many offers each partner got (weights).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    pub last: BTreeMap<String, String>,
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RuleState {
    /// Records that `rule` chose `partner`.
    pub fn chose(&mut self, rule: &str, partner: &str) {
        self.last.insert(rule.to_string(), partner.to_string());
        *self
            .counts
            .entry(rule.to_string())
            .or_default()
            .entry(partner.to_string())
            .or_insert(0) += 1;
    }
}

/// A partner as distribution sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub partner: &'a Partner,
    /// Leads offered to or worked by the partner right now.
    pub open_leads: u32,
    /// It has an enabled peer daemon or at least one web user.
    pub reachable: bool,
}

/// One line of the rule trace: a code (catalog key `trace.<code>`), the
/// partner it is about, if any, and details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub code: String,
    pub partner: Option<String>,
    pub detail: String,
}

fn step(code: &str, partner: Option<&str>, detail: impl Into<String>) -> TraceStep {
    TraceStep {
        code: code.to_string(),
        partner: partner.map(str::to_string),
        detail: detail.into(),
    }
}

/// Partners a grouped trace line names before it only counts the rest.
const NAMED: usize = 20;

/// The per-partner lines, grouped by code as they come (in the order codes
/// first appear): a code that one partner got stays that partner's line;
/// several become one line naming the first [`NAMED`] and counting the
/// rest. A round's trace stays small, and cheap to make, however many
/// partners the directory holds.
#[derive(Default)]
struct Grouper {
    groups: Vec<Group>,
}

/// One code's partners: the code, how many, and the first [`NAMED`] as
/// (partner, detail).
type Group = (&'static str, usize, Vec<(String, String)>);

impl Grouper {
    /// Counts `partner` under `code`; `detail` is only made for the named.
    fn add(&mut self, code: &'static str, partner: &str, detail: impl FnOnce() -> String) {
        let at = match self.groups.iter().position(|g| g.0 == code) {
            Some(at) => at,
            None => {
                self.groups.push((code, 0, Vec::new()));
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[at];
        group.1 += 1;
        if group.2.len() < NAMED {
            group.2.push((partner.to_string(), detail()));
        }
    }

    fn finish(self) -> Vec<TraceStep> {
        self.groups
            .into_iter()
            .map(|(code, n, mut named)| {
                if n == 1
                    && let Some((partner, detail)) = named.pop()
                {
                    return step(code, Some(&partner), detail);
                }
                let mut names: Vec<String> = named
                    .into_iter()
                    .map(|(who, detail)| {
                        if detail.is_empty() {
                            who
                        } else {
                            format!("{who} ({detail})")
                        }
                    })
                    .collect();
                if n > NAMED {
                    names.push(format!("+{}", n - NAMED));
                }
                step(code, None, format!("{n}: {}", names.join(", ")))
            })
            .collect()
    }
}

/// The outcome of a distribution round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The partner id and the rule name, when someone was chosen.
    pub chosen: Option<(String, String)>,
    pub trace: Vec<TraceStep>,
}

/// The implicit rule when none is configured.
fn default_rule() -> Rule {
    Rule {
        name: "default".into(),
        countries: Vec::new(),
        product_lines: Vec::new(),
        tiers: Vec::new(),
        capacity: 0,
        strategy: Strategy::RoundRobin,
        weights: BTreeMap::new(),
    }
}

fn rule_matches(rule: &Rule, lead: &LeadInput) -> bool {
    (rule.countries.is_empty() || rule.countries.iter().any(|c| c == &lead.country))
        && (rule.product_lines.is_empty()
            || rule
                .product_lines
                .iter()
                .any(|r| lead.product_lines.iter().any(|l| l.eq_ignore_ascii_case(r))))
}

/// Whether the partner's territory covers the lead's.
pub fn covers(partner: &Partner, lead: &LeadInput) -> bool {
    partner.country.eq_ignore_ascii_case(&lead.country)
        && (partner.region.is_empty()
            || lead.region.is_empty()
            || partner
                .region
                .trim()
                .eq_ignore_ascii_case(lead.region.trim()))
}

fn working(stage: Stage) -> bool {
    matches!(
        stage,
        Stage::Onboarding
            | Stage::Enabled
            | Stage::FirstDeal
            | Stage::Growing
            | Stage::Active
            | Stage::Strategic
            | Stage::AtRisk
    )
}

/// What a rule's fixed checks make of the directory for one territory:
/// the partners that pass them and the trace lines of those that do not.
/// The fixed checks (stage, reachability, tier, territory, weight) depend
/// on the rule, the lead's country and region, and the partners only, so
/// one screening serves every lead of a transaction with that territory;
/// only exclusion and capacity are looked at lead by lead, and only for the
/// partners that passed.
struct Screen {
    /// Positions (in the candidates, so in id order) of those that passed.
    passed: Vec<usize>,
    /// The `eligible` trace line when the per-lead checks take nobody out.
    eligible: Option<TraceStep>,
    /// The lines of the partners that failed a fixed check, by code.
    skipped: Vec<TraceStep>,
}

/// Screenings kept for one set of candidates and rules (see [`Screen`]).
/// Valid while the candidates' partners, their reachability and the rules
/// stay the same: make a new one when any of them changes.
#[derive(Default)]
pub struct Screens {
    by_territory: HashMap<(usize, String, String), Screen>,
}

/// Why `c` fails one of `rule`'s fixed checks for `lead`, if it does.
fn fixed_skip(c: &Candidate<'_>, rule: &Rule, lead: &LeadInput) -> Option<&'static str> {
    let p = c.partner;
    if !working(p.stage) {
        Some("inactive")
    } else if !c.reachable {
        Some("unreachable")
    } else if !rule.tiers.is_empty() && !rule.tiers.iter().any(|t| t.eq_ignore_ascii_case(&p.tier))
    {
        Some("tier")
    } else if !covers(p, lead) {
        Some("territory")
    } else if rule.strategy == Strategy::Weighted
        && rule.weights.get(&p.id).copied().unwrap_or(0) == 0
    {
        Some("no_weight")
    } else {
        None
    }
}

impl Screen {
    fn of(candidates: &[Candidate<'_>], rule: &Rule, lead: &LeadInput) -> Screen {
        let (mut passed, mut eligible, mut skipped) =
            (Vec::new(), Grouper::default(), Grouper::default());
        for (i, c) in candidates.iter().enumerate() {
            let p = c.partner;
            match fixed_skip(c, rule, lead) {
                None => {
                    passed.push(i);
                    eligible.add("eligible", &p.id, String::new);
                }
                Some(code) => skipped.add(code, &p.id, || match code {
                    "inactive" => p.stage_name().to_string(),
                    "tier" => format!("{} ∉ [{}]", p.tier, rule.tiers.join(", ")),
                    "territory" => format!(
                        "{} {} ≠ {} {}",
                        p.country, p.region, lead.country, lead.region
                    ),
                    _ => String::new(),
                }),
            }
        }
        Screen {
            passed,
            eligible: eligible.finish().pop(),
            skipped: skipped.finish(),
        }
    }
}

/// Chooses a partner for `lead` among `candidates` (in partner id order:
/// the caller keeps them so, so that a round never sorts the directory),
/// never one in `exclude` (partners it was offered to before). `screens`
/// keeps the fixed checks' results between calls with the same candidates
/// and rules. Changes nothing else: the caller records the choice in
/// `state` with [`RuleState::chose`].
///
/// The trace: the rule, then the eligible partners, those taken out for
/// this lead (already offered, at capacity), those the fixed checks took
/// out, and the choice.
pub fn choose(
    lead: &LeadInput,
    candidates: &[Candidate<'_>],
    rules: &Rules,
    state: &RuleState,
    exclude: &BTreeSet<String>,
    screens: &mut Screens,
) -> Choice {
    let mut trace = Vec::new();
    if !lead.consent {
        trace.push(step("no_consent", None, ""));
        return Choice {
            chosen: None,
            trace,
        };
    }
    let fallback = default_rule();
    let (at, rule) = if rules.rules.is_empty() {
        trace.push(step("default_rule", None, ""));
        (usize::MAX, &fallback)
    } else {
        match rules.rules.iter().position(|r| rule_matches(r, lead)) {
            Some(at) => {
                let r = &rules.rules[at];
                trace.push(step("rule", None, r.name.clone()));
                (at, r)
            }
            None => {
                trace.push(step(
                    "no_rule",
                    None,
                    format!("{} / {}", lead.country, lead.product_lines.join(", ")),
                ));
                return Choice {
                    chosen: None,
                    trace,
                };
            }
        }
    };
    let territory = (
        at,
        lead.country.to_ascii_uppercase(),
        lead.region.trim().to_ascii_lowercase(),
    );
    let screen = screens
        .by_territory
        .entry(territory)
        .or_insert_with(|| Screen::of(candidates, rule, lead));
    let per_lead = !exclude.is_empty() || rule.capacity > 0;
    let kept: Vec<usize>;
    let eligible: &[usize] = if per_lead {
        let (mut names, mut out, mut left) = (Grouper::default(), Grouper::default(), Vec::new());
        for &i in &screen.passed {
            let c = &candidates[i];
            if exclude.contains(&c.partner.id) {
                out.add("already_offered", &c.partner.id, String::new);
            } else if rule.capacity > 0 && c.open_leads >= rule.capacity {
                out.add("capacity", &c.partner.id, || {
                    format!("{}/{}", c.open_leads, rule.capacity)
                });
            } else {
                names.add("eligible", &c.partner.id, String::new);
                left.push(i);
            }
        }
        trace.extend(names.finish());
        trace.extend(out.finish());
        kept = left;
        &kept
    } else {
        trace.extend(screen.eligible.clone());
        &screen.passed
    };
    trace.extend(screen.skipped.iter().cloned());
    let Some(&first) = eligible.first() else {
        trace.push(step("nobody", None, ""));
        return Choice {
            chosen: None,
            trace,
        };
    };
    let chosen = match rule.strategy {
        Strategy::RoundRobin => {
            // The first eligible after the last chosen, in id order (a
            // binary search: the positions follow the ids).
            let last = state.last.get(&rule.name);
            let next = last
                .and_then(|l| {
                    let at = eligible.partition_point(|&i| candidates[i].partner.id <= *l);
                    eligible.get(at).copied()
                })
                .unwrap_or(first);
            let id = &candidates[next].partner.id;
            trace.push(step(
                "round_robin",
                Some(id),
                last.cloned().unwrap_or_default(),
            ));
            id.clone()
        }
        Strategy::Weighted => {
            let counts = state.counts.get(&rule.name);
            let score = |c: &Candidate<'_>| {
                let n = counts
                    .and_then(|m| m.get(&c.partner.id))
                    .copied()
                    .unwrap_or(0);
                let w = u64::from(rule.weights.get(&c.partner.id).copied().unwrap_or(1));
                (n + 1, w)
            };
            // Lowest (n+1)/w, compared exactly by cross-multiplication; ties by id.
            let mut best = &candidates[first];
            for &i in &eligible[1..] {
                let c = &candidates[i];
                let (n1, w1) = score(c);
                let (n0, w0) = score(best);
                if u128::from(n1) * u128::from(w0) < u128::from(n0) * u128::from(w1) {
                    best = c;
                }
            }
            let (n, w) = score(best);
            trace.push(step(
                "weighted",
                Some(&best.partner.id),
                format!("{}/{}", n - 1, w),
            ));
            best.partner.id.clone()
        }
    };
    Choice {
        chosen: Some((chosen, rule.name.clone())),
        trace,
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use crate::directory::PartnerType;
    use guanxi_protocol::messages::Customer;
    use proptest::prelude::{Strategy as _, *};

    fn partner(id: &str, tier: &str, country: &str, region: &str, stage: Stage) -> Partner {
        Partner {
            id: id.into(),
            name: id.into(),
            kind: PartnerType::Reseller,
            tier: tier.into(),
            country: country.into(),
            region: region.into(),
            stage,
            peer: None,
            contacts: Vec::new(),
            notes: String::new(),
            time_zone: String::new(),
            created: 0,
            updated: 0,
        }
    }

    fn lead(country: &str, region: &str, lines: &[&str], consent: bool) -> LeadInput {
        LeadInput {
            customer: Customer {
                company: "Contoso".into(),
                contact: String::new(),
                email: String::new(),
                phone: String::new(),
            },
            country: country.into(),
            region: region.into(),
            product_lines: lines.iter().map(|s| s.to_string()).collect(),
            estimated_value: None,
            source: String::new(),
            campaign: String::new(),
            consent,
            notes: String::new(),
        }
    }

    fn rule(tiers: &[&str], capacity: u32, strategy: Strategy) -> Rule {
        Rule {
            name: "r".into(),
            countries: Vec::new(),
            product_lines: Vec::new(),
            tiers: tiers.iter().map(|s| s.to_string()).collect(),
            capacity,
            strategy,
            weights: BTreeMap::new(),
        }
    }

    #[test]
    fn round_robin_rotates_and_the_trace_explains() {
        let ps = [
            partner("a", "gold", "TW", "", Stage::Active),
            partner("b", "silver", "TW", "", Stage::Active),
            partner("c", "gold", "TW", "", Stage::Active),
            partner("d", "gold", "JP", "", Stage::Active),
        ];
        let cands: Vec<Candidate> = ps
            .iter()
            .map(|p| Candidate {
                partner: p,
                open_leads: 0,
                reachable: true,
            })
            .collect();
        let rules = Rules {
            offer_hours: 24,
            rules: vec![rule(&["Gold"], 0, Strategy::RoundRobin)],
        };
        let mut state = RuleState::default();
        let l = lead("TW", "", &["cnc"], true);
        let mut got = Vec::new();
        let mut screens = Screens::default();
        for _ in 0..3 {
            let c = choose(&l, &cands, &rules, &state, &BTreeSet::new(), &mut screens);
            let (p, r) = c.chosen.expect("someone");
            state.chose(&r, &p);
            got.push(p);
        }
        assert_eq!(got, vec!["a", "c", "a"]);
        let c = choose(
            &l,
            &cands,
            &rules,
            &state,
            &BTreeSet::new(),
            &mut Screens::default(),
        );
        let codes: Vec<(&str, Option<&str>)> = c
            .trace
            .iter()
            .map(|s| (s.code.as_str(), s.partner.as_deref()))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("rule", None),
                ("eligible", None),
                ("tier", Some("b")),
                ("territory", Some("d")),
                ("round_robin", Some("c")),
            ]
        );
        assert_eq!(c.trace[1].detail, "2: a, c");
        let none = choose(
            &lead("TW", "", &["cnc"], false),
            &cands,
            &rules,
            &state,
            &BTreeSet::new(),
            &mut Screens::default(),
        );
        assert_eq!(none.chosen, None);
        assert_eq!(none.trace[0].code, "no_consent");
    }

    #[test]
    fn a_large_directory_gives_a_short_trace() {
        let ps: Vec<Partner> = (0..2_000)
            .map(|i| partner(&format!("p{i:04}"), "gold", "TW", "", Stage::Active))
            .collect();
        let cands: Vec<Candidate> = ps
            .iter()
            .map(|p| Candidate {
                partner: p,
                open_leads: 0,
                reachable: true,
            })
            .collect();
        let rules = Rules {
            offer_hours: 24,
            rules: vec![rule(&["gold"], 0, Strategy::RoundRobin)],
        };
        let c = choose(
            &lead("TW", "", &["cnc"], true),
            &cands,
            &rules,
            &RuleState::default(),
            &BTreeSet::new(),
            &mut Screens::default(),
        );
        let codes: Vec<&str> = c.trace.iter().map(|s| s.code.as_str()).collect();
        assert_eq!(codes, vec!["rule", "eligible", "round_robin"]);
        assert!(
            c.trace[1].detail.starts_with("2000: p0000, p0001")
                && c.trace[1].detail.ends_with(", +1980"),
            "{}",
            c.trace[1].detail
        );
        // Weighted too.
        let mut weighted = rule(&["gold"], 0, Strategy::Weighted);
        for p in &ps {
            weighted.weights.insert(p.id.clone(), 1);
        }
        let rules = Rules {
            offer_hours: 24,
            rules: vec![weighted],
        };
        let c = choose(
            &lead("TW", "", &["cnc"], true),
            &cands,
            &rules,
            &RuleState::default(),
            &BTreeSet::new(),
            &mut Screens::default(),
        );
        assert!(
            c.trace[1].detail.starts_with("2000: p0000, p0001")
                && c.trace[1].detail.ends_with(", +1980"),
            "{}",
            c.trace[1].detail
        );
    }

    #[test]
    fn weights_share_offers_in_proportion() {
        let ps = [
            partner("a", "", "TW", "", Stage::Active),
            partner("b", "", "TW", "", Stage::Active),
        ];
        let cands: Vec<Candidate> = ps
            .iter()
            .map(|p| Candidate {
                partner: p,
                open_leads: 0,
                reachable: true,
            })
            .collect();
        let mut r = rule(&[], 0, Strategy::Weighted);
        r.weights.insert("a".into(), 3);
        r.weights.insert("b".into(), 1);
        let rules = Rules {
            offer_hours: 24,
            rules: vec![r],
        };
        let mut state = RuleState::default();
        let l = lead("TW", "", &["cnc"], true);
        let mut a = 0;
        for _ in 0..40 {
            let (p, r) = choose(
                &l,
                &cands,
                &rules,
                &state,
                &BTreeSet::new(),
                &mut Screens::default(),
            )
            .chosen
            .expect("someone");
            if p == "a" {
                a += 1;
            }
            state.chose(&r, &p);
        }
        assert_eq!(a, 30);
    }

    fn arb_partner(i: usize) -> impl proptest::strategy::Strategy<Value = (Partner, u32, bool)> {
        (
            prop::sample::select(vec!["gold", "silver", "bronze"]),
            prop::sample::select(vec!["TW", "JP", "US"]),
            prop::sample::select(vec!["", "north", "south"]),
            prop::sample::select(vec![
                Stage::Active,
                Stage::Prospect,
                Stage::Strategic,
                Stage::Dormant,
            ]),
            0u32..5,
            any::<bool>(),
        )
            .prop_map(move |(tier, country, region, stage, open, reachable)| {
                (
                    partner(&format!("p{i:02}"), tier, country, region, stage),
                    open,
                    reachable,
                )
            })
    }

    fn arb_partners() -> impl proptest::strategy::Strategy<Value = Vec<(Partner, u32, bool)>> {
        (0usize..12).prop_flat_map(|n| (0..n).map(arb_partner).collect::<Vec<_>>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Whoever is chosen satisfies consent, tier, territory, capacity,
        /// stage, reachability and exclusion; and someone is chosen whenever
        /// such a partner exists.
        #[test]
        fn choices_honour_every_constraint(
            partners in arb_partners(),
            country in prop::sample::select(vec!["TW", "JP", "US"]),
            region in prop::sample::select(vec!["", "north", "south"]),
            tiers in prop::sample::subsequence(vec!["gold", "silver", "bronze"], 0..=3),
            capacity in 0u32..4,
            consent in any::<bool>(),
            weighted in any::<bool>(),
            excluded in prop::collection::btree_set(0usize..12, 0..4),
            rounds in 1usize..6,
        ) {
            let strategy = if weighted { Strategy::Weighted } else { Strategy::RoundRobin };
            let mut r = rule(&tiers, capacity, strategy);
            for (p, _, _) in &partners {
                r.weights.insert(p.id.clone(), 1 + (p.id.len() as u32 % 3));
            }
            let rules = Rules { offer_hours: 24, rules: vec![r] };
            let l = lead(country, region, &["cnc"], consent);
            let exclude: BTreeSet<String> = excluded.iter().map(|i| format!("p{i:02}")).collect();
            let mut open: BTreeMap<String, u32> =
                partners.iter().map(|(p, n, _)| (p.id.clone(), *n)).collect();
            let mut state = RuleState::default();
            // One screening for every round, as a transaction keeps it.
            let mut screens = Screens::default();
            for _ in 0..rounds {
                let cands: Vec<Candidate> = partners
                    .iter()
                    .map(|(p, _, reachable)| Candidate { partner: p, open_leads: open[&p.id], reachable: *reachable })
                    .collect();
                let ok = |c: &Candidate| {
                    consent
                        && !exclude.contains(&c.partner.id)
                        && working(c.partner.stage)
                        && c.reachable
                        && (tiers.is_empty() || tiers.contains(&c.partner.tier.as_str()))
                        && covers(c.partner, &l)
                        && (capacity == 0 || c.open_leads < capacity)
                };
                let choice = choose(&l, &cands, &rules, &state, &exclude, &mut screens);
                match &choice.chosen {
                    Some((id, rule)) => {
                        let c = cands.iter().find(|c| &c.partner.id == id).expect("a candidate");
                        prop_assert!(ok(c), "chose {id}, which breaks a constraint: {:?}", choice.trace);
                        if !weighted {
                            // Round robin: the first qualifying after the last chosen, else the first.
                            let last = state.last.get(rule).cloned().unwrap_or_default();
                            let expected = cands.iter().filter(|c| ok(c)).find(|c| c.partner.id > last)
                                .or_else(|| cands.iter().find(|c| ok(c)))
                                .map(|c| c.partner.id.clone());
                            prop_assert_eq!(Some(id.clone()), expected);
                        }
                        state.chose(rule, id);
                        *open.get_mut(id).expect("known") += 1;
                    }
                    None => prop_assert!(!cands.iter().any(ok), "nobody chosen though someone qualifies: {:?}", choice.trace),
                }
            }
        }
    }
}
