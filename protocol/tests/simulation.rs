//! Deterministic simulation of federated nodes (SPEC §12.1).
//!
//! One seed drives every choice: which user acts on which record, which
//! stream delivers next, which request or answer is lost (a crash between
//! commit and answer looks the same to the sender). Three nodes — `acme`
//! vendor of `globex` and `initech`, `globex` vendor of `initech` — act on
//! every record family at once, through the real state machines and the real
//! authority bookkeeping (`state::authority::Slot`, the code the daemon's
//! engine runs). Some records begin in the vendor's web view, with the
//! partner under its web id, and are handed to the partner's node (SPEC
//! §25) before both go on with them. Streams keep their order, as HTTPS with one request in
//! flight does; streams cross freely. After quiescence every record must be
//! identical on both of its nodes (canonical bytes, histories included), at
//! the same version, with nothing pending; every ledger must balance to
//! zero; no checkpoint may have reported a difference; every envelope must
//! have been consumed exactly once.
//!
//! - `cargo test -p guanxi-protocol --test simulation` runs 10,000 seeds.
//! - `GUANXI_SIM_SEEDS=1000000 cargo test --release -p guanxi-protocol --test
//!   simulation` runs more; `GUANXI_SIM_FIRST=N` starts elsewhere.
//! - A failure prints its seed; `GUANXI_SIM_SEED=N cargo test -p
//!   guanxi-protocol --test simulation -- --nocapture` replays exactly that
//!   seed and prints its trace.
//!
//! `authority_rule_is_what_makes_nodes_agree` runs the same simulation with
//! the rule switched off (each node applies every message where it
//! arrives, as before SPEC §12.1) and requires that it then finds a
//! divergence: the simulation can fail.

use guanxi_protocol::canonical;
use guanxi_protocol::messages::Message;
use guanxi_protocol::state::authority::{Answer, Slot};
use guanxi_protocol::state::mdf::RequestStatus;
use guanxi_protocol::state::{self, Context, Record};
use guanxi_protocol::{NodeId, ReasonCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const NODES: [&str; 3] = ["acme", "globex", "initech"];
/// (vendor, partner) of every relationship.
const PAIRS: [(usize, usize); 3] = [(0, 1), (0, 2), (1, 2)];
const T0: i64 = 1_795_651_200_000;
const MINUTE: i64 = 60_000;
/// Most records per relationship, so that actions meet on the same records.
const MAX_RECORDS: usize = 8;

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo).max(0) as u64 + 1)) as i64
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

/// An envelope as the simulation needs it (signing is tested elsewhere).
#[derive(Clone)]
struct Env {
    seq: u64,
    subject: String,
    ctx: Context,
    message: Message,
    record_version: Option<u64>,
}

/// A receipt: what the receiver did.
#[derive(Clone)]
struct Receipt {
    refused: Option<(ReasonCode, String)>,
    record_version: Option<u64>,
}

#[derive(Default)]
struct Outgoing {
    sent: Vec<Env>,
    /// Receipts the sender holds: envelopes 1..=acked.
    acked: u64,
}

#[derive(Default)]
struct Incoming {
    /// Receipts stored with each consumed envelope, seq 1.. in order.
    receipts: Vec<Receipt>,
    /// How often each seq was applied (must end all ones).
    applied: Vec<u32>,
}

struct Node {
    id: NodeId,
    slots: BTreeMap<(usize, String), Slot>,
    out: BTreeMap<usize, Outgoing>,
    inn: BTreeMap<usize, Incoming>,
}

struct World {
    nodes: Vec<Node>,
    rng: Rng,
    clock: i64,
    next_id: u64,
    /// With the rule off, every node applies every message where it arrives.
    authority_rule: bool,
    trace: Vec<String>,
    problems: Vec<String>,
    /// What happened, by event and family (coverage of the interleavings).
    stats: BTreeMap<String, u64>,
}

fn msg(kind: &str, body: Value) -> Message {
    Message::decode(kind, &body).unwrap_or_else(|e| panic!("simulation built a bad {kind}: {e}"))
}

fn customer() -> Value {
    json!({"company": "Contoso", "contact": "", "email": "", "phone": ""})
}

impl World {
    fn new(seed: u64, authority_rule: bool) -> World {
        let nodes = NODES
            .iter()
            .map(|n| Node {
                id: n.parse().expect("node id"),
                slots: BTreeMap::new(),
                out: BTreeMap::new(),
                inn: BTreeMap::new(),
            })
            .collect();
        World {
            nodes,
            rng: Rng(seed),
            clock: T0,
            next_id: 0,
            authority_rule,
            trace: Vec::new(),
            problems: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Node `me` sends `message` about `subject` to `peer`, as the engine's
    /// `send` does: applied through the slot, queued only when it applies
    /// (then true).
    fn send(&mut self, me: usize, peer: usize, subject: &str, message: Message) -> bool {
        let node = &mut self.nodes[me];
        let ctx = Context {
            from: node.id.clone(),
            to: NODES[peer].parse().expect("node id"),
            at: self.clock,
        };
        let out = node.out.entry(peer).or_default();
        let seq = out.sent.len() as u64 + 1;
        let slot = node.slots.entry((peer, subject.to_string())).or_default();
        let mut next = slot.clone();
        let result = if self.authority_rule {
            next.send(&node.id, &ctx, &message, seq)
        } else {
            naive(&mut next, &ctx, &message).map(|()| None)
        };
        match result {
            Ok(record_version) => {
                *slot = next;
                self.trace.push(format!(
                    "{} → {}: #{seq} {} {subject} v{record_version:?}",
                    NODES[me],
                    NODES[peer],
                    message.kind()
                ));
                out.sent.push(Env {
                    seq,
                    subject: subject.to_string(),
                    ctx,
                    message,
                    record_version,
                });
                true
            }
            Err(e) => {
                if slot.record.is_none() && slot.follow.is_none() && slot.version == 0 {
                    node.slots.remove(&(peer, subject.to_string()));
                }
                self.trace.push(format!(
                    "{} refuses its own {} on {subject}: {}",
                    NODES[me],
                    message.kind(),
                    e.code
                ));
                false
            }
        }
    }

    /// The receiver's side of one envelope (SPEC §7 steps 7–11).
    fn receive(&mut self, to: usize, from: usize, env: &Env) -> Receipt {
        let node = &mut self.nodes[to];
        let inn = node.inn.entry(from).or_default();
        let consumed = inn.receipts.len() as u64;
        if env.seq <= consumed {
            // A retry: the stored receipt, nothing applied again.
            return inn.receipts[(env.seq - 1) as usize].clone();
        }
        assert_eq!(env.seq, consumed + 1, "the sender skipped a seq");
        let slot = node.slots.entry((from, env.subject.clone())).or_default();
        let family = family(&env.message);
        if env.record_version.is_some_and(|v| v > slot.version + 1) {
            *self.stats.entry(format!("early {family}")).or_default() += 1;
        }
        if slot.has_pending() && env.record_version.is_some() {
            *self.stats.entry(format!("crossed {family}")).or_default() += 1;
        }
        let mut next = slot.clone();
        let result = if self.authority_rule {
            next.receive(&node.id, &env.ctx, &env.message, env.record_version)
                .map(|r| (r.version, r.refused, r.faults))
        } else {
            naive(&mut next, &env.ctx, &env.message).map(|()| (None, None, Vec::new()))
        };
        let receipt = match result {
            Ok((version, refused, faults)) => {
                *slot = next;
                if refused.is_none() && env.message.kind() == "survey.answer" {
                    *self.stats.entry("answered survey".into()).or_default() += 1;
                }
                for f in faults {
                    self.problems.push(format!(
                        "{} could not apply {}'s {} v{} on {}: {}",
                        NODES[to], NODES[from], f.kind, f.version, env.subject, f.error
                    ));
                }
                Receipt {
                    refused: refused.map(|e| (e.code, e.message)),
                    record_version: version,
                }
            }
            Err(e) => {
                if slot.record.is_none() && slot.follow.is_none() && slot.version == 0 {
                    node.slots.remove(&(from, env.subject.clone()));
                }
                *self.stats.entry(format!("refused {family}")).or_default() += 1;
                Receipt {
                    refused: Some((e.code, e.message)),
                    record_version: None,
                }
            }
        };
        if let Some((ReasonCode::LedgerMismatch, why)) = &receipt.refused {
            self.problems.push(format!(
                "{} reports a ledger mismatch on {} that in-flight messages explain: {why}",
                NODES[to], env.subject
            ));
        }
        self.trace.push(format!(
            "{} ← {}: #{} {} {} → {}",
            NODES[to],
            NODES[from],
            env.seq,
            env.message.kind(),
            env.subject,
            match (&receipt.refused, receipt.record_version) {
                (Some((code, _)), _) => format!("refused {code}"),
                (None, Some(v)) => format!("placed v{v}"),
                (None, None) => "accepted".into(),
            }
        ));
        let inn = node.inn.entry(from).or_default();
        inn.receipts.push(receipt.clone());
        inn.applied.push(1);
        receipt
    }

    /// The sender's side of a receipt (the engine's `answered`).
    fn answered(&mut self, me: usize, peer: usize, env: &Env, receipt: &Receipt) {
        let node = &mut self.nodes[me];
        let out = node.out.entry(peer).or_default();
        if env.seq != out.acked + 1 {
            return; // an old answer to a retry: already handled
        }
        out.acked = env.seq;
        if !self.authority_rule {
            return;
        }
        let answer = match (&receipt.refused, receipt.record_version) {
            (Some((code, why)), _) => Answer::Refused(format!("{code}: {why}")),
            (None, Some(v)) => Answer::Placed(v),
            (None, None) => Answer::Received,
        };
        if let Some(slot) = node.slots.get_mut(&(peer, env.subject.clone())) {
            for f in slot.answered(env.seq, &answer, self.clock) {
                self.problems.push(format!(
                    "{} could not apply {}'s {} v{} on {}: {}",
                    NODES[me], NODES[peer], f.kind, f.version, env.subject, f.error
                ));
            }
        }
    }

    /// One delivery attempt on the stream `from → to`: up to a batch of
    /// envelopes in seq order, each possibly lost on the way or its answer
    /// lost on the way back.
    fn deliver(&mut self, from: usize, to: usize, lossy: bool) {
        let batch = 1 + self.rng.below(3);
        for _ in 0..batch {
            let out = self.nodes[from].out.entry(to).or_default();
            let Some(env) = out.sent.get(out.acked as usize).cloned() else {
                return;
            };
            if lossy && self.rng.percent(10) {
                self.trace
                    .push(format!("#{} {}→{} lost", env.seq, NODES[from], NODES[to]));
                return;
            }
            let receipt = self.receive(to, from, &env);
            if lossy && self.rng.percent(10) {
                self.trace.push(format!(
                    "answer to #{} {}→{} lost",
                    env.seq, NODES[from], NODES[to]
                ));
                return;
            }
            self.answered(from, to, &env, &receipt);
        }
    }

    fn streams_with_backlog(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for (peer, o) in &node.out {
                if (o.acked as usize) < o.sent.len() {
                    out.push((i, *peer));
                }
            }
        }
        out
    }

    /// A user at one of a relationship's nodes does something.
    fn act(&mut self) {
        let (vendor, partner) = *self.rng.pick(&PAIRS).expect("pairs");
        let as_vendor = self.rng.percent(50);
        let (me, peer) = if as_vendor {
            (vendor, partner)
        } else {
            (partner, vendor)
        };
        let subjects: Vec<String> = self.nodes[me]
            .slots
            .iter()
            .filter(|((p, _), s)| *p == peer && s.record.is_some())
            .map(|((_, subject), _)| subject.clone())
            .collect();
        let open_new =
            subjects.len() < MAX_RECORDS && (subjects.is_empty() || self.rng.percent(20));
        if open_new {
            if self.rng.percent(10) {
                self.hand_over(vendor, partner);
            } else {
                self.open(me, peer, as_vendor);
            }
            return;
        }
        let Some(subject) = self.rng.pick(&subjects).cloned() else {
            return;
        };
        let record = self.nodes[me].slots[&(peer, subject.clone())]
            .record
            .clone();
        let confirmed = self.nodes[me].slots[&(peer, subject.clone())]
            .confirmed()
            .cloned();
        let me_id = self.nodes[me].id.clone();
        if let Some(record) = record
            && let Some(message) = self.follow_up(as_vendor, &me_id, &record, confirmed.as_ref())
        {
            self.send(me, peer, &subject, message);
        }
    }

    fn open(&mut self, me: usize, peer: usize, as_vendor: bool) {
        if let Some((subject, m)) = self.opening(me, peer, as_vendor) {
            self.send(me, peer, &subject, m);
        }
    }

    /// The vendor worked with the partner in its web view before the
    /// partner had a node (SPEC §25): a record opened and moved on there
    /// through the same state machines, the partner named by its web id,
    /// then handed over into the stream, where both sides go on with it.
    fn hand_over(&mut self, vendor: usize, partner: usize) {
        let web: NodeId = format!("{}-web", NODES[partner]).parse().expect("node id");
        let vendor_id = self.nodes[vendor].id.clone();
        let partner_id = self.nodes[partner].id.clone();
        let by_vendor = self.rng.percent(50);
        let (opener, other) = if by_vendor {
            (vendor, partner)
        } else {
            (partner, vendor)
        };
        let Some((subject, opening)) = self.opening(opener, other, by_vendor) else {
            return;
        };
        let on_web = |id: &NodeId| {
            if id == &partner_id {
                web.clone()
            } else {
                id.clone()
            }
        };
        let local = |from: &NodeId, to: &NodeId, at: i64| Context {
            from: on_web(from),
            to: on_web(to),
            at,
        };
        let first = if by_vendor {
            local(&vendor_id, &partner_id, self.clock)
        } else {
            local(&partner_id, &vendor_id, self.clock)
        };
        let Ok(Some(mut record)) = state::apply(None, &first, &opening) else {
            return;
        };
        for _ in 0..self.rng.below(4) {
            self.clock += MINUTE;
            let as_vendor = self.rng.percent(50);
            let me = if as_vendor {
                vendor_id.clone()
            } else {
                web.clone()
            };
            let Some(m) = self.follow_up(as_vendor, &me, &record, Some(&record)) else {
                continue;
            };
            let ctx = if as_vendor {
                local(&vendor_id, &partner_id, self.clock)
            } else {
                local(&partner_id, &vendor_id, self.clock)
            };
            if let Ok(Some(next)) = state::apply(Some(&record), &ctx, &m) {
                record = next;
            }
        }
        if record.authority() != &vendor_id {
            // Only the vendor's own records are kept in its web view.
            return;
        }
        let family = record.family();
        let moved = state::handover::handed_over(&record, &web, &partner_id);
        let m = Message::RecordHandover(guanxi_protocol::messages::RecordHandover {
            record: moved,
            was: web,
        });
        if self.send(vendor, partner, &subject, m) {
            *self
                .stats
                .entry(format!("handed over {family}"))
                .or_default() += 1;
        }
    }

    /// A message that opens a record between `me` and `peer`, and its
    /// subject.
    fn opening(&mut self, me: usize, peer: usize, as_vendor: bool) -> Option<(String, Message)> {
        let now = self.clock;
        // Either side of a relationship publishes library resources and
        // announcements (the publisher is their authority).
        if self.rng.percent(6) {
            // Either side proposes a joint goal; the vendor of the
            // relationship is its authority.
            let vendor = if as_vendor { NODES[me] } else { NODES[peer] };
            let subject = self.fresh(&format!("goal.{}", NODES[me]));
            let period = guanxi_protocol::scorecard::Period::parse("2027-Q1").expect("period");
            let m = msg(
                "goal.propose",
                json!({"vendor": vendor, "period": period, "metric": "leads_won",
                       "target": self.rng.range(1, 20), "owner": "Mei", "note": ""}),
            );
            return Some((subject, m));
        }
        if as_vendor && self.rng.percent(5) {
            // The vendor shares a scorecard of the partner's period.
            let subject = self.fresh(&format!("scorecard.{}", NODES[me]));
            let m = msg("scorecard.share", scorecard_share(self.next_id));
            return Some((subject, m));
        }
        if !as_vendor && self.rng.percent(8) {
            // A person at the partner takes a quiz of the vendor's course.
            let subject = self.fresh(&format!("attempt.{}", NODES[me]));
            let m = msg(
                "quiz.submit",
                json!({"course": format!("resource.{}.c1", NODES[peer]), "version": 1, "learner": "Mei",
                       "answers": [{"question": "q1", "choices": [0]}, {"question": "q2", "choices": [1, 2]}]}),
            );
            return Some((subject, m));
        }
        if self.rng.percent(4) {
            // Either side surveys the other's people; the surveyor is the
            // authority, each answer a request of the recipient's.
            let subject = self.fresh(&format!("survey.{}", NODES[me]));
            let closes_at = now + self.rng.range(1, 60) * MINUTE;
            let m = msg(
                "survey.send",
                json!({"series": "satisfaction", "round": "Q1", "title_en": "How are we doing?",
                       "title_zh": "我們做得如何？", "closes_at": closes_at, "anonymous": self.rng.percent(50),
                       "questions": [
                           {"id": "nps", "kind": "nps", "text_en": "Recommend us?", "text_zh": "推薦？",
                            "choices": [], "required": true},
                           {"id": "why", "kind": "text", "text_en": "Why?", "text_zh": "為什麼？",
                            "choices": [], "required": false}]}),
            );
            return Some((subject, m));
        }
        if self.rng.percent(25) {
            if self.rng.percent(50) {
                let subject = self.fresh(&format!("resource.{}", NODES[me]));
                let m = msg("resource.publish", resource(1, self.next_id));
                return Some((subject, m));
            } else {
                let subject = self.fresh(&format!("announcement.{}", NODES[me]));
                let requires_ack = self.rng.percent(60);
                let m = msg(
                    "announcement.post",
                    json!({"version": 1, "title": "News", "text": "Price change", "language": "en",
                           "requires_ack": requires_ack}),
                );
                return Some((subject, m));
            }
        }
        if as_vendor {
            match self.rng.below(3) {
                0 => {
                    let accept_by = now + self.rng.range(1, 30) * MINUTE;
                    let subject = self.fresh("lead");
                    let m = msg(
                        "lead.offer",
                        json!({"customer": customer(), "country": "TW", "region": "", "product_lines": ["cnc"],
                               "estimated_value": null, "source": "web", "campaign": "", "notes": "",
                               "accept_by": accept_by}),
                    );
                    Some((subject, m))
                }
                1 => {
                    let subject = format!("catalog.{}", NODES[me]);
                    let version = self.next_id as i64 + 1;
                    self.next_id += 1;
                    let m = msg(
                        "catalog.publish",
                        json!({"version": version, "products": [], "price_lists": []}),
                    );
                    Some((subject, m))
                }
                _ => {
                    let subject = self.fresh("mdf");
                    let amount = self.rng.range(1, 50) * 1000;
                    let m = msg(
                        "mdf.budget",
                        json!({"action": "allocate", "amount": amount, "currency": "TWD", "period": "2027-Q1",
                               "allow_overdraw": false, "expires_on": null, "note": ""}),
                    );
                    Some((subject, m))
                }
            }
        } else {
            match self.rng.below(4) {
                0 => {
                    let subject = self.fresh("order");
                    let lines: Vec<Value> = (1..=1 + self.rng.below(3))
                        .map(|l| {
                            json!({"line": l, "sku": format!("SKU-{l}"),
                                   "quantity": self.rng.range(1, 10), "unit_price": 12_345})
                        })
                        .collect();
                    let m = msg(
                        "order.place",
                        json!({"reference": "PO", "currency": "TWD", "price_list": "std", "discount_bp": 250,
                               "tax_rate_bp": 500, "lines": lines, "requested_date": null,
                               "ship_to": {"name": "X", "street": "1 Rd", "city": "Taipei", "postal_code": "100", "region": "", "country": "TW"},
                               "lead": null}),
                    );
                    Some((subject, m))
                }
                1 => {
                    let subject = self.fresh("claim");
                    let m = msg("warranty.claim", warranty_claim("first"));
                    Some((subject, m))
                }
                2 => {
                    let subject = self.fresh("service");
                    let m = msg(
                        "service.open",
                        json!({"customer": customer(), "sku": "SKU-1", "serial": null, "problem": "noise",
                               "priority": "normal", "attachments": []}),
                    );
                    Some((subject, m))
                }
                _ => {
                    let subject = self.fresh("reg");
                    let m = msg(
                        "lead.register",
                        json!({"customer": customer(), "country": "TW", "region": "", "product_lines": ["cnc"],
                               "estimated_value": null, "expected_close": null, "notes": ""}),
                    );
                    Some((subject, m))
                }
            }
        }
    }

    /// A plausible next message for a record, by role; some are refused by
    /// the state machine, as a user's stale click would be.
    fn follow_up(
        &mut self,
        as_vendor: bool,
        me: &NodeId,
        record: &Record,
        confirmed: Option<&Record>,
    ) -> Option<Message> {
        let r = &mut self.rng;
        let now = self.clock;
        let id = {
            self.next_id += 1;
            self.next_id
        };
        Some(match (record, as_vendor) {
            (Record::Lead(l), true) => {
                if now > l.offer.accept_by && r.percent(70) {
                    msg("lead.expire", json!({"note": ""}))
                } else {
                    msg("lead.withdraw", json!({"reason": "direct", "note": ""}))
                }
            }
            (Record::Lead(_), false) => match r.below(4) {
                0 => msg("lead.accept", json!({"note": ""})),
                1 => msg("lead.decline", json!({"reason": "no_capacity", "note": ""})),
                2 => msg(
                    "lead.update",
                    json!({"status": "contacted", "won_value": null, "won_on": null, "lost_reason": null, "note": ""}),
                ),
                _ => msg(
                    "lead.update",
                    json!({"status": "won", "won_value": {"amount": 500, "currency": "TWD"}, "won_on": "2026-12-01", "lost_reason": null, "note": ""}),
                ),
            },
            (Record::Registration(g), true) => {
                let approve = r.percent(60);
                msg(
                    "lead.registration",
                    if approve {
                        json!({"decision": "approved", "registered_at": g.registered_at, "exclusive_until": "2027-06-30", "reason": null, "note": ""})
                    } else {
                        json!({"decision": "rejected", "registered_at": g.registered_at, "exclusive_until": null, "reason": "conflict", "note": ""})
                    },
                )
            }
            (Record::Registration(_), false) => return None,
            (Record::Order(o), true) => match r.below(3) {
                0 => {
                    let lines: Vec<Value> = o
                        .lines
                        .iter()
                        .map(|l| json!({"line": l.line, "accepted": r.range(0, l.ordered - l.cancelled), "confirmed_date": null, "reason": null}))
                        .collect();
                    msg("order.ack", json!({"lines": lines, "note": ""}))
                }
                1 => {
                    let l = r.pick(&o.lines)?;
                    let q = r.range(1, l.open().max(1));
                    msg(
                        "order.ship",
                        json!({"shipment": format!("S{id}"), "carrier": "", "tracking": "", "lines": [{"line": l.line, "quantity": q, "serials": []}]}),
                    )
                }
                _ => {
                    let l = r.pick(&o.lines)?;
                    let q = r.range(1, (l.shipped - l.invoiced).max(1));
                    msg(
                        "order.invoice",
                        json!({"invoice": format!("INV{id}"), "issued_on": "2026-12-01", "due_on": null, "lines": [{"line": l.line, "quantity": q}]}),
                    )
                }
            },
            (Record::Order(o), false) => {
                let l = r.pick(&o.lines)?;
                let q = r.range(1, l.open().max(1));
                msg(
                    "order.cancel",
                    json!({"lines": [{"line": l.line, "quantity": q}], "reason": "changed plans"}),
                )
            }
            (Record::Catalog(c), true) => msg(
                "catalog.publish",
                json!({"version": c.catalog.version + 1, "products": [], "price_lists": []}),
            ),
            (Record::Catalog(_), false) => return None,
            (Record::Resource(res), _) if &res.publisher == me => {
                if r.percent(30) {
                    msg("resource.withdraw", json!({"note": "outdated"}))
                } else {
                    msg("resource.publish", resource(res.resource.version + 1, id))
                }
            }
            (Record::Resource(_), _) => return None,
            (Record::Announcement(a), _) if &a.publisher == me => {
                let requires_ack = r.percent(60);
                msg(
                    "announcement.post",
                    json!({"version": a.post.version + 1, "title": format!("News {id}"), "text": "Corrected",
                           "language": "en", "requires_ack": requires_ack}),
                )
            }
            // The recipient's people answer, each once (a later answer
            // after the closing time is refused where it is made).
            (Record::Survey(s), _) if &s.recipient == me => msg(
                "survey.answer",
                json!({"respondent": format!("user {id}"), "answers": [
                    {"question": "nps", "score": r.range(0, 10), "choices": [], "text": ""}]}),
            ),
            (Record::Survey(_), _) => return None,
            (Record::Announcement(_), _) => msg(
                "announcement.ack",
                json!({"acknowledged": r.percent(50), "by": format!("user {id}")}),
            ),
            // The publisher grades (a stale second grade is refused); the
            // learner has nothing more to say.
            (Record::Quiz(q), _) if &q.publisher == me => {
                let passed = r.percent(50);
                let certification = passed.then(|| format!("cert{id}"));
                msg(
                    "quiz.grade",
                    json!({"correct": if passed { 4 } else { 1 }, "total": 4, "passed": passed,
                           "note": "", "certification": certification}),
                )
            }
            (Record::Quiz(_), _) => return None,
            (Record::Scorecard(s), _) if &s.vendor == me => {
                msg("scorecard.share", scorecard_share(id))
            }
            (Record::Scorecard(_), _) => return None,
            // The side that did not make the proposal answers it (its own
            // view: a crossing counter-proposal makes its acceptance stale).
            (Record::Goal(g), _)
                if g.status == guanxi_protocol::state::goal::GoalStatus::Proposed
                    && &g.proposed_by != me =>
            {
                match r.below(3) {
                    0 => msg("goal.accept", json!({"target": g.target, "note": ""})),
                    1 => msg(
                        "goal.counter",
                        json!({"target": g.target + r.range(1, 5), "owner": "Wen", "note": ""}),
                    ),
                    _ => msg("goal.decline", json!({"note": "not this quarter"})),
                }
            }
            (Record::Goal(_), _) => return None,
            (Record::Mdf(b), true) => {
                let submitted: Vec<_> = b
                    .requests
                    .iter()
                    .filter(|q| q.status == RequestStatus::Submitted)
                    .collect();
                let claims: Vec<_> = b
                    .claims
                    .iter()
                    .filter(|c| c.claim.claim.starts_with('c'))
                    .collect();
                match r.below(6) {
                    0 => msg(
                        "mdf.budget",
                        json!({"action": "top_up", "amount": r.range(1, 20) * 1000, "currency": "TWD", "period": "2027-Q1",
                               "allow_overdraw": false, "expires_on": null, "note": ""}),
                    ),
                    1 if r.percent(20) => msg(
                        "mdf.budget",
                        json!({"action": "expire", "amount": 0, "currency": "TWD", "period": "2027-Q1",
                               "allow_overdraw": false, "expires_on": null, "note": ""}),
                    ),
                    2 => {
                        let q = r.pick(&submitted)?;
                        let approve = r.percent(80);
                        msg(
                            "mdf.decision",
                            json!({"request": q.request.request, "decision": if approve {"approved"} else {"rejected"},
                                   "amount": if approve { r.range(1, 30) * 1000 } else { 0 }, "reason": "ok"}),
                        )
                    }
                    3 => {
                        let c = r.pick(&claims)?;
                        let (decision, amount) = match r.below(3) {
                            0 => ("approved", c.claim.amount.amount),
                            1 => ("partial", r.range(1, c.claim.amount.amount.max(1))),
                            _ => ("rejected", 0),
                        };
                        msg(
                            "mdf.claim_decision",
                            json!({"claim": c.claim.claim, "decision": decision, "amount": amount, "reason": "x"}),
                        )
                    }
                    4 => {
                        let c = r.pick(&claims)?;
                        msg(
                            "mdf.paid",
                            json!({"claim": c.claim.claim, "amount": r.range(1, (c.approved - c.paid).max(1)),
                                   "reference": format!("P{id}"), "paid_on": "2026-12-01"}),
                        )
                    }
                    _ => checkpoint(confirmed?),
                }
            }
            (Record::Mdf(b), false) => {
                let approved: Vec<_> = b
                    .requests
                    .iter()
                    .filter(|q| q.status == RequestStatus::Approved)
                    .collect();
                match r.below(3) {
                    0 => msg(
                        "mdf.request",
                        json!({"request": format!("r{id}"), "activity": "booth", "starts_on": "2027-02-01", "ends_on": "2027-02-03",
                               "expected_cost": {"amount": r.range(1, 30) * 1000, "currency": "TWD"}, "expected_leads": 10,
                               "expected_revenue": null, "campaign": "spring"}),
                    ),
                    1 => {
                        let q = r.pick(&approved)?;
                        msg(
                            "mdf.claim",
                            json!({"claim": format!("c{id}"), "request": q.request.request,
                                   "amount": {"amount": r.range(1, q.approved.max(1)), "currency": "TWD"},
                                   "invoice_number": format!("I{id}"), "invoice_date": "2027-02-04", "proofs": []}),
                        )
                    }
                    _ => checkpoint(confirmed?),
                }
            }
            (Record::Warranty(_), true) => match r.below(5) {
                0 => msg(
                    "warranty.decision",
                    json!({"decision": "repair", "credit": null, "note": ""}),
                ),
                1 | 2 => msg(
                    "warranty.decision",
                    json!({"decision": "need_info", "credit": null, "note": "photo?"}),
                ),
                3 => msg(
                    "warranty.decision",
                    json!({"decision": "reject", "credit": null, "note": "no"}),
                ),
                _ => msg(
                    "warranty.fulfil",
                    json!({"reference": format!("RMA{id}"), "note": ""}),
                ),
            },
            (Record::Warranty(_), false) => {
                msg("warranty.claim", warranty_claim(&format!("amended {id}")))
            }
            (Record::Service(_), vendor) => {
                let changes: &[Option<&str>] = if vendor {
                    &[
                        None,
                        Some("in_progress"),
                        Some("waiting_on_partner"),
                        Some("resolved"),
                        Some("closed"),
                    ]
                } else {
                    &[None, Some("in_progress"), Some("closed"), Some("reopened")]
                };
                let change = *r.pick(changes)?;
                msg(
                    "service.update",
                    json!({"status": change, "comment": format!("note {id}"), "attachments": []}),
                )
            }
        })
    }

    /// Runs the seed: user actions mixed with deliveries, then quiescence.
    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.clock += self.rng.range(1, 3 * MINUTE);
            let backlog = self.streams_with_backlog();
            if backlog.is_empty() || self.rng.percent(55) {
                self.act();
            } else if let Some(&(from, to)) = self.rng.pick(&backlog) {
                self.deliver(from, to, true);
            }
        }
        // Quiescence: the network heals and every stream drains.
        let mut rounds = 0;
        loop {
            let backlog = self.streams_with_backlog();
            let Some(&(from, to)) = self.rng.pick(&backlog) else {
                break;
            };
            self.clock += self.rng.range(1, MINUTE);
            self.deliver(from, to, false);
            rounds += 1;
            assert!(rounds < 1_000_000, "the streams never drained");
        }
    }

    /// The properties that must hold after quiescence.
    fn check(&mut self) {
        for (i, node) in self.nodes.iter().enumerate() {
            for (peer, o) in &node.out {
                let inn = &self.nodes[*peer].inn.get(&i);
                let consumed = inn.map_or(0, |x| x.receipts.len());
                if consumed != o.sent.len() || o.acked as usize != o.sent.len() {
                    self.problems.push(format!(
                        "stream {}→{}: sent {}, consumed {consumed}, acknowledged {}",
                        NODES[i],
                        NODES[*peer],
                        o.sent.len(),
                        o.acked
                    ));
                }
                if let Some(inn) = inn
                    && inn.applied.iter().any(|n| *n != 1)
                {
                    self.problems.push(format!(
                        "stream {}→{}: an envelope applied twice",
                        NODES[i], NODES[*peer]
                    ));
                }
            }
        }
        for (vendor, partner) in PAIRS {
            let subjects: std::collections::BTreeSet<String> = self.nodes[vendor]
                .slots
                .keys()
                .filter(|(p, _)| *p == partner)
                .chain(
                    self.nodes[partner]
                        .slots
                        .keys()
                        .filter(|(p, _)| *p == vendor),
                )
                .map(|(_, s)| s.clone())
                .collect();
            for subject in subjects {
                let empty = Slot::default();
                let v = self.nodes[vendor]
                    .slots
                    .get(&(partner, subject.clone()))
                    .unwrap_or(&empty);
                let p = self.nodes[partner]
                    .slots
                    .get(&(vendor, subject.clone()))
                    .unwrap_or(&empty);
                let (a, b) = (v.confirmed(), p.confirmed());
                let bytes =
                    |r: Option<&Record>| r.map(|r| canonical::to_canonical(r).expect("canonical"));
                let where_ = format!("{}/{} {subject}", NODES[vendor], NODES[partner]);
                if bytes(a) != bytes(b) {
                    self.problems.push(format!(
                        "{where_}: records differ\n  {}: {}\n  {}: {}",
                        NODES[vendor],
                        a.map(
                            |r| String::from_utf8_lossy(&canonical::to_canonical(r).expect("c"))
                                .into_owned()
                        )
                        .unwrap_or_default(),
                        NODES[partner],
                        b.map(
                            |r| String::from_utf8_lossy(&canonical::to_canonical(r).expect("c"))
                                .into_owned()
                        )
                        .unwrap_or_default(),
                    ));
                    continue;
                }
                if self.authority_rule {
                    if v.version != p.version {
                        self.problems.push(format!(
                            "{where_}: versions {} and {}",
                            v.version, p.version
                        ));
                    }
                    for (who, s) in [(vendor, v), (partner, p)] {
                        if let Some(f) = &s.follow
                            && (!f.pending.is_empty() || !f.early.is_empty())
                        {
                            self.problems.push(format!(
                                "{where_}: {} still has unsettled messages",
                                NODES[who]
                            ));
                        }
                        if s.follow.as_ref().is_none_or(|f| f.refused.is_none())
                            && s.record.as_ref() != s.confirmed()
                        {
                            self.problems.push(format!(
                                "{where_}: {} shows a record that is not the confirmed one",
                                NODES[who]
                            ));
                        }
                    }
                }
                if let Some(Record::Mdf(budget)) = a {
                    for problem in budget.verify() {
                        self.problems.push(format!("{where_}: ledger: {problem}"));
                    }
                }
            }
        }
    }
}

fn family(message: &Message) -> &'static str {
    match message.kind() {
        "lead.register" | "lead.registration" => "registration",
        k if k.starts_with("lead.") => "lead",
        k if k.starts_with("order.") => "order",
        k if k.starts_with("catalog.") => "catalog",
        k if k.starts_with("mdf.") => "mdf",
        k if k.starts_with("warranty.") => "warranty",
        k if k.starts_with("resource.") => "resource",
        k if k.starts_with("announcement.") => "announcement",
        k if k.starts_with("quiz.") => "quiz",
        k if k.starts_with("scorecard.") => "scorecard",
        k if k.starts_with("goal.") => "goal",
        k if k.starts_with("survey.") => "survey",
        _ => "service",
    }
}

/// A scorecard of 2026-Q4 whose figures depend on `n`.
fn scorecard_share(n: u64) -> Value {
    let period = guanxi_protocol::scorecard::Period::parse("2026-Q4").expect("period");
    let figures = guanxi_protocol::scorecard::Scorecard {
        leads_offered: n % 7,
        leads_won: n % 3,
        ..Default::default()
    };
    json!({"period": period, "figures": figures})
}

/// A resource body of `version`: a file, a link or an article by `n`.
fn resource(version: i64, n: u64) -> Value {
    let (file, link, article) = match n % 3 {
        0 => (
            json!({"sha256": format!("{n:064x}"), "name": "brochure.pdf", "content_type": "application/pdf", "size": 1000 + n}),
            Value::Null,
            Value::Null,
        ),
        1 => (
            Value::Null,
            json!(format!("https://example.com/{n}")),
            Value::Null,
        ),
        _ => (Value::Null, Value::Null, json!(format!("# Note {n}"))),
    };
    json!({"version": version, "title": format!("Resource {n}"), "summary": "", "folder": "sales", "tags": ["cnc"],
           "language": "en", "valid_from": null, "valid_to": null, "file": file, "link": link, "article": article,
           "origin": null})
}

fn warranty_claim(description: &str) -> Value {
    json!({"sku": "SKU-1", "serial": "SN-1", "purchase_date": "2026-01-02", "description": description,
           "customer": customer(), "attachments": [], "forwarded": null})
}

/// A checkpoint of the ledger the authority confirmed (what the daemon sends).
fn checkpoint(confirmed: &Record) -> Message {
    let Record::Mdf(b) = confirmed else {
        panic!("checkpoint of a record that is not a budget");
    };
    msg(
        "mdf.checkpoint",
        json!({"entries": b.entries.len(), "entry_hashes": b.entry_hashes(), "balances": b.balances}),
    )
}

/// Every node applying every message where it arrives (the rule off).
fn naive(slot: &mut Slot, ctx: &Context, message: &Message) -> Result<(), state::StateError> {
    if let Some(next) = state::apply(slot.record.as_ref(), ctx, message)? {
        slot.record = Some(next);
    }
    Ok(())
}

/// Runs one seed; `Err` holds its problems and trace.
fn run_seed(seed: u64, authority_rule: bool) -> Result<BTreeMap<String, u64>, String> {
    let mut world = World::new(seed, authority_rule);
    world.run(steps(seed));
    world.check();
    if world.problems.is_empty() {
        Ok(world.stats)
    } else {
        Err(format!(
            "seed {seed}: {}\ntrace:\n  {}",
            world.problems.join("\n"),
            world.trace.join("\n  ")
        ))
    }
}

fn steps(seed: u64) -> usize {
    40 + (seed % 120) as usize
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_record_converges_under_any_interleaving() {
    if let Some(seed) = env_u64("GUANXI_SIM_SEED") {
        match run_seed(seed, true) {
            Ok(_) => {
                let mut world = World::new(seed, true);
                world.run(steps(seed));
                println!("seed {seed} passes; trace:\n  {}", world.trace.join("\n  "));
            }
            Err(report) => panic!("{report}"),
        }
        return;
    }
    let seeds = env_u64("GUANXI_SIM_SEEDS").unwrap_or(10_000);
    let first = env_u64("GUANXI_SIM_FIRST").unwrap_or(1);
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for seed in first..first + seeds {
        match run_seed(seed, true) {
            Ok(stats) => {
                for (k, n) in stats {
                    *totals.entry(k).or_default() += n;
                }
            }
            Err(report) => {
                let short: String = report.lines().take(12).collect::<Vec<_>>().join("\n");
                panic!(
                    "{short}\n...\nreplay: GUANXI_SIM_SEED={seed} cargo test -p guanxi-protocol --test simulation -- --nocapture"
                );
            }
        }
    }
    println!("{seeds} seeds: {totals:#?}");
    // The seeds must reach the interleavings the rule is for, in every
    // family that has requests: a follower's request crossing the
    // authority's message, the authority refusing it, and a message placed
    // after a version the follower had not learnt yet.
    if seeds >= 1_000 {
        for family in [
            "lead",
            "registration",
            "order",
            "mdf",
            "warranty",
            "service",
            "announcement",
            "quiz",
            "goal",
        ] {
            // A warranty claim, a registration or a quiz attempt has
            // nothing the partner can send that a vendor's message could
            // make refusable; a goal is negotiated in turns.
            let events: &[&str] = if matches!(family, "warranty" | "registration" | "quiz" | "goal")
            {
                &["crossed", "early"]
            } else {
                &["crossed", "refused", "early"]
            };
            for event in events {
                let key = format!("{event} {family}");
                assert!(
                    totals.get(&key).copied().unwrap_or(0) > 0,
                    "no seed reached `{key}`"
                );
            }
        }
        // Records kept with web partners are handed to their nodes and
        // go on there (SPEC §25).
        for family in [
            "lead",
            "order",
            "warranty",
            "service",
            "mdf",
            "registration",
        ] {
            let key = format!("handed over {family}");
            assert!(
                totals.get(&key).copied().unwrap_or(0) > 0,
                "no seed reached `{key}`"
            );
        }
        // Nothing crosses a survey's answers (its surveyor sends nothing
        // after it, and the recipient checks what the surveyor would): the
        // family must at least be exercised.
        assert!(
            totals.get("answered survey").copied().unwrap_or(0) > 0,
            "no seed answered a survey"
        );
    }
}

#[test]
fn authority_rule_is_what_makes_nodes_agree() {
    let diverged = (1..=500)
        .filter(|&seed| run_seed(seed, false).is_err())
        .count();
    assert!(
        diverged > 0,
        "with the authority rule off no seed diverged: the simulation could not fail"
    );
}

#[test]
fn a_real_difference_is_reported_by_a_checkpoint() {
    // Same ledger on both sides, then one entry differs: the checkpoint names it.
    let (acme, globex): (NodeId, NodeId) =
        ("acme".parse().expect("id"), "globex".parse().expect("id"));
    let ctx = |from: &NodeId, to: &NodeId, at| Context {
        from: from.clone(),
        to: to.clone(),
        at,
    };
    let allocate = |amount: i64| {
        msg(
            "mdf.budget",
            json!({"action": "allocate", "amount": amount, "currency": "TWD", "period": "2027-Q1",
                   "allow_overdraw": false, "expires_on": null, "note": ""}),
        )
    };
    let mut vendor = Slot::default();
    let v = vendor
        .send(&acme, &ctx(&acme, &globex, T0), &allocate(1000), 1)
        .expect("allocate");
    let mut partner = Slot::default();
    // The partner's copy was damaged: another amount.
    partner
        .receive(&globex, &ctx(&acme, &globex, T0), &allocate(999), v)
        .expect("arrives");
    let cp = checkpoint(vendor.confirmed().expect("budget"));
    let v2 = vendor
        .send(&acme, &ctx(&acme, &globex, T0 + 1), &cp, 2)
        .expect("checkpoint");
    let received = partner
        .receive(&globex, &ctx(&acme, &globex, T0 + 1), &cp, v2)
        .expect("in turn");
    let refused = received.refused.expect("a difference is reported");
    assert_eq!(refused.code, ReasonCode::LedgerMismatch);
    assert!(refused.message.contains("entry 1"), "{}", refused.message);
    assert_eq!(partner.version, 2, "the checkpoint's version is consumed");
}
