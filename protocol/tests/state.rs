//! State machine behaviour: legal paths, illegal transitions with their
//! reason codes, and an order property test over random message sequences.

use guanxi_protocol::messages::Message;
use guanxi_protocol::state::{
    self, Context, LeadStatus, OrderStatus, Record, ServiceStatus, WarrantyStatus,
};
use guanxi_protocol::{NodeId, ReasonCode};
use proptest::prelude::*;
use serde_json::{Value, json};

const T0: i64 = 1_795_651_200_000;
const HOUR: i64 = 3_600_000;

fn node(s: &str) -> NodeId {
    s.parse().expect("node id")
}

fn ctx(from: &str, to: &str, at: i64) -> Context {
    Context {
        from: node(from),
        to: node(to),
        at,
    }
}

fn msg(kind: &str, body: Value) -> Message {
    Message::decode(kind, &body).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn step(record: Option<&Record>, c: &Context, m: &Message) -> Result<Record, (ReasonCode, String)> {
    match state::apply(record, c, m) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => panic!("{} changed no record", m.kind()),
        Err(e) => Err((e.code, e.message)),
    }
}

fn offer(accept_by: i64) -> Message {
    msg(
        "lead.offer",
        json!({"customer": {"company": "Contoso", "contact": "", "email": "", "phone": ""},
               "country": "TW", "region": "", "product_lines": ["cnc"], "estimated_value": null,
               "source": "web", "campaign": "", "notes": "", "accept_by": accept_by}),
    )
}

fn update(status: &str) -> Message {
    let body = match status {
        "won" => {
            json!({"status": "won", "won_value": {"amount": 500, "currency": "TWD"}, "won_on": "2026-12-01", "lost_reason": null, "note": ""})
        }
        "lost" => {
            json!({"status": "lost", "won_value": null, "won_on": null, "lost_reason": "price", "note": ""})
        }
        s => {
            json!({"status": s, "won_value": null, "won_on": null, "lost_reason": null, "note": ""})
        }
    };
    msg("lead.update", body)
}

fn status_of(r: &Record) -> String {
    r.status()
}

#[test]
fn lead_happy_path_and_refusals() {
    let offered = step(None, &ctx("acme", "globex", T0), &offer(T0 + 24 * HOUR)).expect("offer");
    assert_eq!(status_of(&offered), "offered");

    // Won before accepted.
    let (code, message) = step(
        Some(&offered),
        &ctx("globex", "acme", T0 + HOUR),
        &update("won"),
    )
    .expect_err("illegal");
    assert_eq!(code, ReasonCode::IllegalTransition);
    assert!(message.contains("accepted"), "{message}");
    // Accepted by a node the lead was not offered to.
    let accept = msg("lead.accept", json!({"note": ""}));
    let (code, _) = step(Some(&offered), &ctx("initech", "acme", T0 + HOUR), &accept)
        .expect_err("not the partner");
    assert_eq!(code, ReasonCode::NotAllowed);
    // Accepted after the deadline.
    let (code, _) = step(
        Some(&offered),
        &ctx("globex", "acme", T0 + 25 * HOUR),
        &accept,
    )
    .expect_err("expired");
    assert_eq!(code, ReasonCode::Expired);
    // A second offer on the same subject.
    let (code, _) = step(
        Some(&offered),
        &ctx("acme", "globex", T0 + HOUR),
        &offer(T0 + 48 * HOUR),
    )
    .expect_err("exists");
    assert_eq!(code, ReasonCode::RecordExists);

    let accepted =
        step(Some(&offered), &ctx("globex", "acme", T0 + HOUR), &accept).expect("accept");
    let qualified = step(
        Some(&accepted),
        &ctx("globex", "acme", T0 + 2 * HOUR),
        &update("qualified"),
    )
    .expect("qualified");
    let (code, _) = step(
        Some(&qualified),
        &ctx("globex", "acme", T0 + 3 * HOUR),
        &update("contacted"),
    )
    .expect_err("backwards");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let won = step(
        Some(&qualified),
        &ctx("globex", "acme", T0 + 3 * HOUR),
        &update("won"),
    )
    .expect("won");
    let Record::Lead(lead) = &won else {
        panic!("not a lead")
    };
    assert_eq!(
        (lead.status, lead.won_value.as_ref().map(|m| m.amount)),
        (LeadStatus::Won, Some(500))
    );
    let (code, _) = step(
        Some(&won),
        &ctx("globex", "acme", T0 + 4 * HOUR),
        &update("lost"),
    )
    .expect_err("final");
    assert_eq!(code, ReasonCode::IllegalTransition);
}

#[test]
fn follow_ups_need_an_existing_record_of_their_family() {
    let (code, _) = step(
        None,
        &ctx("globex", "acme", T0),
        &msg("lead.accept", json!({"note": ""})),
    )
    .expect_err("unknown");
    assert_eq!(code, ReasonCode::UnknownRecord);
    let lead = step(None, &ctx("acme", "globex", T0), &offer(T0 + HOUR)).expect("offer");
    let ack = msg(
        "order.ack",
        json!({"lines": [{"line": 1, "accepted": 1, "confirmed_date": null, "reason": null}], "note": ""}),
    );
    let (code, message) =
        step(Some(&lead), &ctx("acme", "globex", T0), &ack).expect_err("wrong family");
    assert_eq!(code, ReasonCode::IllegalTransition);
    assert!(message.contains("lead"), "{message}");
    assert!(matches!(
        state::apply(
            None,
            &ctx("acme", "globex", T0),
            &msg("ping", json!({"note": ""}))
        ),
        Ok(None)
    ));
}

fn place(lines: &[(u32, i64, i64)]) -> Message {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, qty, price)| json!({"line": line, "sku": format!("SKU-{line}"), "quantity": qty, "unit_price": price}))
        .collect();
    msg(
        "order.place",
        json!({"reference": "PO-1", "currency": "EUR", "price_list": "eu-gold", "discount_bp": 0, "tax_rate_bp": 0, "lines": lines, "requested_date": null, "lead": null,
               "ship_to": {"name": "Globex", "street": "", "city": "", "postal_code": "", "region": "", "country": "TW"}}),
    )
}

fn ack(lines: &[(u32, i64)]) -> Message {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, accepted)| json!({"line": line, "accepted": accepted, "confirmed_date": null, "reason": null}))
        .collect();
    msg("order.ack", json!({"lines": lines, "note": ""}))
}

fn ship(id: &str, lines: &[(u32, i64)]) -> Message {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, q)| json!({"line": line, "quantity": q, "serials": []}))
        .collect();
    msg(
        "order.ship",
        json!({"shipment": id, "carrier": "DHL", "tracking": "1Z", "lines": lines}),
    )
}

fn cancel(lines: &[(u32, i64)]) -> Message {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, q)| json!({"line": line, "quantity": q}))
        .collect();
    msg(
        "order.cancel",
        json!({"lines": lines, "reason": "changed plans"}),
    )
}

#[test]
fn order_partial_ack_two_shipments_and_cancel_the_rest() {
    let p = ctx("globex", "acme", T0);
    let v = ctx("acme", "globex", T0 + HOUR);
    let placed = step(None, &p, &place(&[(1, 10, 1_000), (2, 5, 250)])).expect("place");
    let Record::Order(o) = &placed else {
        panic!("not an order")
    };
    assert_eq!(o.ordered_totals().map(|t| t.total), Ok(11_250));

    let (code, _) = step(Some(&placed), &v, &ship("S1", &[(1, 1)])).expect_err("ship before ack");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let (code, _) = step(Some(&placed), &p, &ack(&[(1, 8), (2, 5)])).expect_err("partner acks");
    assert_eq!(code, ReasonCode::NotAllowed);
    let (code, _) = step(Some(&placed), &v, &ack(&[(1, 11), (2, 5)])).expect_err("over-accept");
    assert_eq!(code, ReasonCode::BadBody);

    let acked = step(Some(&placed), &v, &ack(&[(1, 8), (2, 5)])).expect("ack");
    assert_eq!(status_of(&acked), "acknowledged");
    let s1 = step(Some(&acked), &v, &ship("S1", &[(1, 3), (2, 5)])).expect("ship 1");
    assert_eq!(status_of(&s1), "partially_shipped");
    let (code, _) = step(Some(&s1), &v, &ship("S1", &[(1, 1)])).expect_err("same shipment id");
    assert_eq!(code, ReasonCode::BadBody);
    let s2 = step(Some(&s1), &v, &ship("S2", &[(1, 2)])).expect("ship 2");
    let (code, _) = step(Some(&s2), &p, &cancel(&[(2, 1)])).expect_err("cancel shipped line");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let done = step(Some(&s2), &p, &cancel(&[(1, 3)])).expect("cancel the rest");
    let Record::Order(o) = &done else {
        panic!("not an order")
    };
    assert_eq!(o.status, OrderStatus::Shipped);
    assert_eq!(
        (o.lines[0].shipped, o.lines[0].cancelled, o.lines[0].open()),
        (5, 3, 0)
    );
    let (code, _) = step(Some(&done), &p, &cancel(&[(1, 1)])).expect_err("nothing left");
    assert_eq!(code, ReasonCode::IllegalTransition);
}

#[test]
fn order_rejected_when_no_line_is_accepted_and_cancelled_when_nothing_shipped() {
    let p = ctx("globex", "acme", T0);
    let v = ctx("acme", "globex", T0);
    let placed = step(None, &p, &place(&[(1, 2, 10)])).expect("place");
    assert_eq!(
        status_of(&step(Some(&placed), &v, &ack(&[(1, 0)])).expect("ack")),
        "rejected"
    );
    assert_eq!(
        status_of(&step(Some(&placed), &p, &cancel(&[(1, 2)])).expect("cancel")),
        "cancelled"
    );
    // Cancel part before the acknowledgement; the vendor can accept only the rest.
    let part = step(Some(&placed), &p, &cancel(&[(1, 1)])).expect("cancel part");
    let (code, _) = step(Some(&part), &v, &ack(&[(1, 2)])).expect_err("accepts cancelled quantity");
    assert_eq!(code, ReasonCode::BadBody);
    let acked = step(Some(&part), &v, &ack(&[(1, 1)])).expect("ack rest");
    assert_eq!(
        status_of(&step(Some(&acked), &v, &ship("S", &[(1, 1)])).expect("ship")),
        "shipped"
    );
}

#[test]
fn order_total_overflow_is_a_clear_rejection() {
    let (code, message) = step(
        None,
        &ctx("globex", "acme", T0),
        &place(&[(1, 9_000_000_000, 9_000_000_000)]),
    )
    .expect_err("overflow");
    assert_eq!(code, ReasonCode::InvalidAmount);
    assert!(message.contains("2^53"), "{message}");
}

#[test]
fn warranty_need_info_then_credit() {
    let claim = msg(
        "warranty.claim",
        json!({"sku": "CNC-5X", "serial": "SN1", "purchase_date": "2026-01-10", "description": "spindle noise",
               "customer": {"company": "Contoso", "contact": "", "email": "", "phone": ""},
               "attachments": [{"sha256": "0".repeat(64), "name": "photo.jpg", "content_type": "image/jpeg", "size": 1000}],
               "forwarded": null}),
    );
    let p = ctx("globex", "acme", T0);
    let v = ctx("acme", "globex", T0 + HOUR);
    let submitted = step(None, &p, &claim).expect("claim");
    let need = msg(
        "warranty.decision",
        json!({"decision": "need_info", "credit": null, "note": "photo please"}),
    );
    let (code, _) = step(Some(&submitted), &p, &need).expect_err("partner decides");
    assert_eq!(code, ReasonCode::NotAllowed);
    let asked = step(Some(&submitted), &v, &need).expect("need info");
    let amended = step(Some(&asked), &p, &claim).expect("amend");
    let credit = msg(
        "warranty.decision",
        json!({"decision": "credit", "credit": {"amount": 12_000, "currency": "EUR"}, "note": ""}),
    );
    let decided = step(Some(&amended), &v, &credit).expect("credit");
    let Record::Warranty(w) = &decided else {
        panic!("not a claim")
    };
    assert_eq!((w.status, w.amendments), (WarrantyStatus::Approved, 1));
    let (code, _) = step(Some(&decided), &v, &credit).expect_err("decided twice");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let (code, _) = step(Some(&decided), &p, &claim).expect_err("amend after decision");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let fulfil = msg(
        "warranty.fulfil",
        json!({"reference": "CN-2027-7", "note": "credited"}),
    );
    let (code, _) = step(Some(&asked), &v, &fulfil).expect_err("not approved");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let done = step(Some(&decided), &v, &fulfil).expect("fulfil");
    let Record::Warranty(w) = &done else {
        panic!("not a claim")
    };
    let kinds: Vec<&str> = w.history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "warranty.claim",
            "warranty.decision",
            "warranty.claim",
            "warranty.decision",
            "warranty.fulfil"
        ]
    );
    assert_eq!(w.status, WarrantyStatus::Fulfilled);
}

#[test]
fn service_request_round_trip_with_reopen() {
    let open = msg(
        "service.open",
        json!({"customer": {"company": "Contoso", "contact": "", "email": "", "phone": ""}, "sku": "CNC-5X",
               "serial": null, "problem": "alarm 41", "priority": "high", "attachments": []}),
    );
    let upd = |status: Option<&str>, comment: &str| {
        msg(
            "service.update",
            json!({"status": status, "comment": comment, "attachments": []}),
        )
    };
    let p = ctx("globex", "acme", T0);
    let v = ctx("acme", "globex", T0 + HOUR);
    let r = step(None, &p, &open).expect("open");
    let (code, _) = step(Some(&r), &p, &upd(Some("resolved"), "")).expect_err("partner resolves");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let r = step(
        Some(&r),
        &v,
        &upd(Some("waiting_on_partner"), "which firmware?"),
    )
    .expect("wait");
    let r = step(Some(&r), &p, &upd(Some("in_progress"), "v2.1")).expect("answer");
    let r = step(Some(&r), &v, &upd(Some("resolved"), "patched")).expect("resolve");
    let r = step(Some(&r), &p, &upd(Some("closed"), "")).expect("close");
    let (code, _) =
        step(Some(&r), &v, &upd(None, "one more thing")).expect_err("comment on closed");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let r = step(Some(&r), &p, &upd(Some("reopened"), "alarm is back")).expect("reopen");
    let Record::Service(s) = &r else {
        panic!("not a service request")
    };
    assert_eq!(
        (s.status, s.comments, s.first_response_at),
        (ServiceStatus::Open, 4, Some(T0 + HOUR))
    );
    let (code, _) =
        step(Some(&r), &ctx("initech", "acme", T0), &upd(None, "hi")).expect_err("stranger");
    assert_eq!(code, ReasonCode::NotAllowed);
}

#[derive(Debug, Clone)]
enum Op {
    Ack(Vec<i64>),
    Ship(Vec<i64>),
    Cancel(Vec<i64>),
}

fn op() -> impl Strategy<Value = Op> {
    let qs = prop::collection::vec(0i64..6, 3);
    prop_oneof![
        qs.clone().prop_map(Op::Ack),
        qs.clone().prop_map(Op::Ship),
        qs.prop_map(Op::Cancel)
    ]
}

proptest! {
    #[test]
    fn order_quantities_stay_consistent(ordered in prop::collection::vec(1i64..6, 3), ops in prop::collection::vec(op(), 0..12)) {
        let p = ctx("globex", "acme", T0);
        let v = ctx("acme", "globex", T0);
        let lines: Vec<(u32, i64, i64)> = ordered.iter().enumerate().map(|(i, q)| (i as u32 + 1, *q, 100)).collect();
        let mut record = step(None, &p, &place(&lines)).expect("place");
        for (n, op) in ops.iter().enumerate() {
            let pick = |qs: &Vec<i64>, keep_zero: bool| -> Vec<(u32, i64)> {
                qs.iter().enumerate().filter(|(_, q)| keep_zero || **q > 0).map(|(i, q)| (i as u32 + 1, *q)).collect()
            };
            let (c, m) = match op {
                Op::Ack(qs) => (&v, ack(&pick(qs, true))),
                Op::Ship(qs) if qs.iter().any(|q| *q > 0) => (&v, ship(&format!("S{n}"), &pick(qs, false))),
                Op::Cancel(qs) if qs.iter().any(|q| *q > 0) => (&p, cancel(&pick(qs, false))),
                _ => continue,
            };
            let before = record.clone();
            match state::apply(Some(&record), c, &m) {
                Ok(Some(r)) => record = r,
                Ok(None) => prop_assert!(false, "order message changed no record"),
                Err(_) => prop_assert_eq!(&record, &before),
            }
            let Record::Order(o) = &record else { panic!("not an order") };
            for l in &o.lines {
                prop_assert!(l.open() >= 0, "negative open quantity: {l:?}");
                prop_assert!(l.shipped + l.cancelled <= l.ordered, "over-shipped or over-cancelled: {l:?}");
            }
            let open: i64 = o.lines.iter().map(|l| l.open()).sum();
            if matches!(o.status, OrderStatus::Shipped | OrderStatus::Cancelled) {
                prop_assert_eq!(open, 0);
            }
        }
    }
}

fn lead_of(r: &Record) -> &state::Lead {
    match r {
        Record::Lead(l) => l,
        other => panic!("not a lead: {other:?}"),
    }
}

#[test]
fn expiry_and_withdrawal_are_the_vendors_and_keep_the_history() {
    let offered = step(None, &ctx("acme", "globex", T0), &offer(T0 + HOUR)).expect("offer");
    let expire = msg("lead.expire", json!({"note": "no answer"}));
    // Not before the deadline, and never by the partner.
    let (code, _) =
        step(Some(&offered), &ctx("acme", "globex", T0 + HOUR), &expire).expect_err("too early");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let (code, _) = step(
        Some(&offered),
        &ctx("globex", "acme", T0 + 2 * HOUR),
        &expire,
    )
    .expect_err("partner");
    assert_eq!(code, ReasonCode::NotAllowed);
    let expired = step(
        Some(&offered),
        &ctx("acme", "globex", T0 + 2 * HOUR),
        &expire,
    )
    .expect("expire");
    assert_eq!(lead_of(&expired).status, LeadStatus::Expired);
    // Accepting an expired lead, even with a timely envelope, is `expired`.
    let (code, message) = step(
        Some(&expired),
        &ctx("globex", "acme", T0 + HOUR / 2),
        &msg("lead.accept", json!({"note": ""})),
    )
    .expect_err("accept after expiry");
    assert_eq!(code, ReasonCode::Expired);
    assert!(message.contains("expired"), "{message}");
    let history: Vec<(&str, LeadStatus)> = lead_of(&expired)
        .history
        .iter()
        .map(|e| (e.kind.as_str(), e.status))
        .collect();
    assert_eq!(
        history,
        vec![
            ("lead.offer", LeadStatus::Offered),
            ("lead.expire", LeadStatus::Expired)
        ]
    );

    // Withdrawal: vendor only, from an accepted lead; reason kept.
    let accepted = step(
        Some(&offered),
        &ctx("globex", "acme", T0 + 1),
        &msg("lead.accept", json!({"note": ""})),
    )
    .expect("accept");
    let withdraw = msg(
        "lead.withdraw",
        json!({"reason": "customer bought direct", "note": ""}),
    );
    let (code, _) = step(Some(&accepted), &ctx("globex", "acme", T0 + 2), &withdraw)
        .expect_err("partner withdraws");
    assert_eq!(code, ReasonCode::NotAllowed);
    let withdrawn =
        step(Some(&accepted), &ctx("acme", "globex", T0 + 2), &withdraw).expect("withdraw");
    let lead = lead_of(&withdrawn);
    assert_eq!(lead.status, LeadStatus::Withdrawn);
    assert_eq!(
        lead.history.last().map(|e| e.note.as_str()),
        Some("customer bought direct")
    );
    let (code, _) =
        step(Some(&withdrawn), &ctx("acme", "globex", T0 + 3), &withdraw).expect_err("twice");
    assert_eq!(code, ReasonCode::IllegalTransition);
}

/// An acceptance and an expiry that cross in flight: the vendor is the
/// lead's authority, so whichever order the partner reads the two streams
/// in, its copy ends as the vendor's record (SPEC §12.1).
#[test]
fn crossing_accept_and_expire_converge() {
    use guanxi_protocol::state::authority::{Answer, Slot};
    let (acme, globex) = (node("acme"), node("globex"));
    let offer = offer(T0 + HOUR);
    let accept = msg("lead.accept", json!({"note": ""}));
    let expire = msg("lead.expire", json!({"note": ""}));
    let (o_ctx, a_ctx, e_ctx) = (
        ctx("acme", "globex", T0),
        ctx("globex", "acme", T0 + HOUR - 1),
        ctx("acme", "globex", T0 + HOUR + 1),
    );
    for expiry_first in [true, false] {
        let mut vendor = Slot::default();
        let mut partner = Slot::default();
        let v1 = vendor.send(&acme, &o_ctx, &offer, 1).expect("offer");
        partner
            .receive(&globex, &o_ctx, &offer, v1)
            .expect("offer arrives");
        // Both act before either hears of the other.
        partner.send(&globex, &a_ctx, &accept, 1).expect("accept");
        assert_eq!(
            partner.record.as_ref().map(Record::status).as_deref(),
            Some("accepted")
        );
        let v2 = vendor.send(&acme, &e_ctx, &expire, 2).expect("expire");
        // The vendor refuses the acceptance that crossed its expiry.
        let (code, _) = vendor
            .clone()
            .receive(&acme, &a_ctx, &accept, None)
            .map(|_| ())
            .map_err(|e| (e.code, e.message))
            .expect_err("refused");
        assert_eq!(code, ReasonCode::Expired);
        let refused = Answer::Refused("expired: too late".into());
        if expiry_first {
            partner
                .receive(&globex, &e_ctx, &expire, v2)
                .expect("expiry");
            partner.answered(1, &refused, T0 + 2 * HOUR);
        } else {
            partner.answered(1, &refused, T0 + 2 * HOUR);
            partner
                .receive(&globex, &e_ctx, &expire, v2)
                .expect("expiry");
        }
        assert_eq!(partner, vendor, "expiry first: {expiry_first}");
        assert_eq!(
            lead_of(partner.record.as_ref().expect("lead")).status,
            LeadStatus::Expired
        );
    }
}

#[test]
fn registration_is_decided_once_by_the_vendor() {
    let register = msg(
        "lead.register",
        json!({"customer": {"company": "Contoso", "contact": "", "email": "it@contoso.tw", "phone": ""},
               "country": "TW", "region": "", "product_lines": ["cnc"], "estimated_value": null,
               "expected_close": "2027-03-31", "notes": ""}),
    );
    let submitted = step(None, &ctx("globex", "acme", T0), &register).expect("register");
    assert_eq!(status_of(&submitted), "submitted");
    let approve = |at: i64| {
        msg(
            "lead.registration",
            json!({"decision": "approved", "registered_at": at, "exclusive_until": "2027-06-30", "reason": null, "note": ""}),
        )
    };
    let (code, _) = step(
        Some(&submitted),
        &ctx("globex", "acme", T0 + 1),
        &approve(T0),
    )
    .expect_err("partner approves itself");
    assert_eq!(code, ReasonCode::NotAllowed);
    let (code, _) = step(
        Some(&submitted),
        &ctx("acme", "globex", T0 + 1),
        &approve(T0 - 5),
    )
    .expect_err("wrong time");
    assert_eq!(code, ReasonCode::BadBody);
    let approved = step(
        Some(&submitted),
        &ctx("acme", "globex", T0 + 1),
        &approve(T0),
    )
    .expect("approve");
    assert_eq!(status_of(&approved), "approved");
    let (code, _) = step(
        Some(&approved),
        &ctx("acme", "globex", T0 + 2),
        &approve(T0),
    )
    .expect_err("twice");
    assert_eq!(code, ReasonCode::IllegalTransition);
    // Rejections need a reason; approvals need a date.
    assert!(
        Message::decode(
            "lead.registration",
            &json!({"decision": "rejected", "registered_at": T0, "exclusive_until": null, "reason": null, "note": ""})
        )
        .is_err()
    );
    assert!(
        Message::decode(
            "lead.registration",
            &json!({"decision": "approved", "registered_at": T0, "exclusive_until": null, "reason": null, "note": ""})
        )
        .is_err()
    );
    // A lead message on a registration subject is the wrong family.
    let (code, _) = step(
        Some(&submitted),
        &ctx("globex", "acme", T0 + 1),
        &msg("lead.accept", json!({"note": ""})),
    )
    .expect_err("family");
    assert_eq!(code, ReasonCode::IllegalTransition);
}

#[test]
fn a_web_partners_record_is_handed_to_its_node_and_goes_on_there() {
    use guanxi_protocol::messages::RecordHandover;
    use guanxi_protocol::state::handover;
    // In the vendor's web view the partner was `globex-web`.
    let offered =
        step(None, &ctx("acme", "globex-web", T0), &offer(T0 + 24 * HOUR)).expect("offer");
    let accepted = step(
        Some(&offered),
        &ctx("globex-web", "acme", T0 + HOUR),
        &msg("lead.accept", json!({"note": "ours"})),
    )
    .expect("accept");
    let moved = handover::handed_over(&accepted, &node("globex-web"), &node("globex"));
    let Record::Lead(lead) = &moved else {
        panic!("not a lead")
    };
    assert_eq!(lead.partner, node("globex"));
    assert_eq!(lead.history.len(), 2, "history kept");
    assert_eq!(
        lead.history[1].by,
        node("globex"),
        "the partner's steps follow it"
    );
    assert_eq!(lead.history[0].by, node("acme"));
    assert_eq!(handover::counterpart(&moved), &node("globex"));

    let handover_msg = Message::RecordHandover(RecordHandover {
        record: moved.clone(),
        was: node("globex-web"),
    });
    // It crosses the wire as a body and decodes to the same message.
    let body = handover_msg.body().expect("body");
    assert_eq!(
        Message::decode("record.handover", &body).expect("decodes"),
        handover_msg
    );
    let opened = step(None, &ctx("acme", "globex", T0 + 2 * HOUR), &handover_msg).expect("opens");
    assert_eq!(opened, moved, "the record is opened exactly as carried");
    // The partner goes on from where it was.
    let won = step(
        Some(&opened),
        &ctx("globex", "acme", T0 + 3 * HOUR),
        &update("won"),
    )
    .expect("won");
    assert_eq!(status_of(&won), "won");

    // Refusals: an existing subject, the wrong sender, the wrong receiver,
    // a `was` naming a party.
    let (code, _) =
        step(Some(&opened), &ctx("acme", "globex", T0), &handover_msg).expect_err("exists");
    assert_eq!(code, ReasonCode::RecordExists);
    let (code, _) = step(None, &ctx("globex", "acme", T0), &handover_msg).expect_err("sender");
    assert_eq!(code, ReasonCode::NotAllowed);
    let (code, message) = step(None, &ctx("acme", "initech", T0), &handover_msg).expect_err("to");
    assert_eq!(code, ReasonCode::NotAllowed);
    assert!(message.contains("initech"), "{message}");
    let bad_was = Message::RecordHandover(RecordHandover {
        record: moved,
        was: node("globex"),
    });
    let (code, _) = step(None, &ctx("acme", "globex", T0), &bad_was).expect_err("was");
    assert_eq!(code, ReasonCode::BadBody);
}
