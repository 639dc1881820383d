//! MDF budgets: the ledger never creates or destroys money and never
//! overdraws (property test over random operation sequences), `verify`
//! agrees with the entries, and bad claims are refused with their reason.

use guanxi_protocol::messages::Message;
use guanxi_protocol::state::mdf::{Account, MdfBudgetRecord};
use guanxi_protocol::state::{self, Context, Record};
use guanxi_protocol::{NodeId, ReasonCode};
use proptest::prelude::*;
use serde_json::{Value, json};

const T0: i64 = 1_795_651_200_000;

fn ctx(vendor: bool, at: i64) -> Context {
    let (a, b) = (
        "acme".parse::<NodeId>().expect("id"),
        "globex".parse::<NodeId>().expect("id"),
    );
    if vendor {
        Context { from: a, to: b, at }
    } else {
        Context { from: b, to: a, at }
    }
}

fn msg(kind: &str, body: Value) -> Message {
    Message::decode(kind, &body).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn budget(r: &Record) -> &MdfBudgetRecord {
    match r {
        Record::Mdf(b) => b,
        other => panic!("{other:?}"),
    }
}

fn apply(
    r: Option<&Record>,
    vendor: bool,
    at: i64,
    kind: &str,
    body: Value,
) -> Result<Record, (ReasonCode, String)> {
    match state::apply(r, &ctx(vendor, at), &msg(kind, body)) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => panic!("no record"),
        Err(e) => Err((e.code, e.message)),
    }
}

fn allocate(amount: i64, overdraw: bool) -> Value {
    json!({"action": "allocate", "amount": amount, "currency": "TWD", "period": "2027-Q1", "allow_overdraw": overdraw, "expires_on": null, "note": ""})
}

fn request(id: &str, cost: i64) -> Value {
    json!({"request": id, "activity": "trade show booth", "starts_on": "2027-02-01", "ends_on": "2027-02-03",
           "expected_cost": {"amount": cost, "currency": "TWD"}, "expected_leads": 40, "expected_revenue": null, "campaign": "spring"})
}

fn claim(id: &str, req: &str, amount: i64, currency: &str, invoice: &str) -> Value {
    json!({"claim": id, "request": req, "amount": {"amount": amount, "currency": currency}, "invoice_number": invoice,
           "invoice_date": "2027-02-10", "proofs": []})
}

#[test]
fn bad_claims_are_refused_with_their_reason() {
    let b = apply(None, true, T0, "mdf.budget", allocate(100_000, false)).expect("allocate");
    let b = apply(
        Some(&b),
        false,
        T0 + 1,
        "mdf.request",
        request("r1", 60_000),
    )
    .expect("request");
    let b = apply(
        Some(&b),
        false,
        T0 + 2,
        "mdf.request",
        request("r2", 10_000),
    )
    .expect("request");
    // Approving more than is available is an overdraw.
    let b3 = apply(
        Some(&b),
        false,
        T0 + 2,
        "mdf.request",
        request("r3", 200_000),
    )
    .expect("request");
    let (code, _) = apply(
        Some(&b3),
        true,
        T0 + 3,
        "mdf.decision",
        json!({"request": "r3", "decision": "approved", "amount": 150_000, "reason": ""}),
    )
    .expect_err("overdraw");
    assert_eq!(code, ReasonCode::InvalidAmount);
    let b = apply(
        Some(&b),
        true,
        T0 + 3,
        "mdf.decision",
        json!({"request": "r1", "decision": "approved", "amount": 50_000, "reason": "lower"}),
    )
    .expect("approve");
    let b = apply(
        Some(&b),
        true,
        T0 + 4,
        "mdf.decision",
        json!({"request": "r2", "decision": "rejected", "amount": 0, "reason": "not in plan"}),
    )
    .expect("reject");
    assert_eq!(
        (
            budget(&b).balance(Account::Available),
            budget(&b).balance(Account::Reserved)
        ),
        (50_000, 50_000)
    );

    let (code, m) = apply(
        Some(&b),
        false,
        T0 + 5,
        "mdf.claim",
        claim("c1", "r1", 50_001, "TWD", "INV-1"),
    )
    .expect_err("over approved");
    assert_eq!(code, ReasonCode::InvalidAmount, "{m}");
    let (code, _) = apply(
        Some(&b),
        false,
        T0 + 5,
        "mdf.claim",
        claim("c1", "r1", 100, "EUR", "INV-1"),
    )
    .expect_err("currency");
    assert_eq!(code, ReasonCode::BadBody);
    let (code, _) = apply(
        Some(&b),
        false,
        T0 + 5,
        "mdf.claim",
        claim("c1", "r2", 100, "TWD", "INV-1"),
    )
    .expect_err("rejected request");
    assert_eq!(code, ReasonCode::IllegalTransition);
    let b = apply(
        Some(&b),
        false,
        T0 + 5,
        "mdf.claim",
        claim("c1", "r1", 30_000, "TWD", "INV-1"),
    )
    .expect("claim");
    let (code, m) = apply(
        Some(&b),
        false,
        T0 + 6,
        "mdf.claim",
        claim("c2", "r1", 1_000, "TWD", "INV-1"),
    )
    .expect_err("duplicate invoice");
    assert!(code == ReasonCode::BadBody && m.contains("INV-1"), "{m}");
    // The vendor approves part; the rest goes back to the reservation.
    let b = apply(Some(&b), true, T0 + 7, "mdf.claim_decision", json!({"claim": "c1", "decision": "partial", "amount": 25_000, "reason": "one receipt missing"})).expect("partial");
    let (code, _) = apply(
        Some(&b),
        true,
        T0 + 8,
        "mdf.paid",
        json!({"claim": "c1", "amount": 25_001, "reference": "TT-1", "paid_on": "2027-03-01"}),
    )
    .expect_err("overpay");
    assert_eq!(code, ReasonCode::InvalidAmount);
    let b = apply(
        Some(&b),
        true,
        T0 + 8,
        "mdf.paid",
        json!({"claim": "c1", "amount": 25_000, "reference": "TT-1", "paid_on": "2027-03-01"}),
    )
    .expect("paid");
    let r = budget(&b);
    assert_eq!(
        [
            Account::Funding,
            Account::Available,
            Account::Reserved,
            Account::Claimed,
            Account::Approved,
            Account::Paid
        ]
        .map(|a| r.balance(a)),
        [-100_000, 50_000, 25_000, 0, 0, 25_000]
    );
    assert!(r.verify().is_empty(), "{:?}", r.verify());

    // A checkpoint matching our ledger passes; one differing entry is named.
    let cp = json!({"entries": r.entries.len(), "entry_hashes": r.entry_hashes(), "balances": r.balances});
    apply(Some(&b), false, T0 + 9, "mdf.checkpoint", cp.clone()).expect("agree");
    let mut other = cp;
    other["entry_hashes"][3] = json!("0".repeat(64));
    let (code, m) = apply(Some(&b), false, T0 + 9, "mdf.checkpoint", other).expect_err("differ");
    assert!(
        code == ReasonCode::LedgerMismatch && m.contains("from entry 4"),
        "{m}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    TopUp(i64),
    Request(u8, i64),
    Decide(u8, bool, i64),
    Claim(u8, u8, i64),
    DecideClaim(u8, u8, i64),
    Pay(u8, i64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..50_000).prop_map(Op::TopUp),
        (0u8..4, 1i64..80_000).prop_map(|(r, c)| Op::Request(r, c)),
        (0u8..4, any::<bool>(), 1i64..80_000).prop_map(|(r, a, x)| Op::Decide(r, a, x)),
        (0u8..6, 0u8..4, 1i64..60_000).prop_map(|(c, r, x)| Op::Claim(c, r, x)),
        (0u8..6, 0u8..3, 1i64..60_000).prop_map(|(c, v, x)| Op::DecideClaim(c, v, x)),
        (0u8..6, 1i64..60_000).prop_map(|(c, x)| Op::Pay(c, x)),
        Just(Op::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn money_is_never_created_destroyed_or_overdrawn(initial in 1i64..200_000, overdraw in any::<bool>(), ops in prop::collection::vec(op(), 1..60)) {
        let mut rec = apply(None, true, T0, "mdf.budget", allocate(initial, overdraw)).expect("allocate");
        let mut funded = initial;
        for (i, o) in ops.iter().enumerate() {
            let at = T0 + 1 + i as i64;
            let step = match o {
                Op::TopUp(a) => apply(Some(&rec), true, at, "mdf.budget",
                    json!({"action": "top_up", "amount": a, "currency": "TWD", "period": "2027-Q1", "allow_overdraw": overdraw, "expires_on": null, "note": ""})),
                Op::Request(r, c) => apply(Some(&rec), false, at, "mdf.request", request(&format!("r{r}"), *c)),
                Op::Decide(r, yes, a) => apply(Some(&rec), true, at, "mdf.decision", if *yes {
                    json!({"request": format!("r{r}"), "decision": "approved", "amount": a, "reason": ""})
                } else {
                    json!({"request": format!("r{r}"), "decision": "rejected", "amount": 0, "reason": "no"})
                }),
                Op::Claim(c, r, a) => apply(Some(&rec), false, at, "mdf.claim", claim(&format!("c{c}"), &format!("r{r}"), *a, "TWD", &format!("INV-{c}"))),
                Op::DecideClaim(c, v, a) => {
                    let (decision, amount) = match v { 0 => ("approved", *a), 1 => ("partial", *a), _ => ("rejected", 0) };
                    apply(Some(&rec), true, at, "mdf.claim_decision", json!({"claim": format!("c{c}"), "decision": decision, "amount": amount, "reason": "r"}))
                }
                Op::Pay(c, a) => apply(Some(&rec), true, at, "mdf.paid", json!({"claim": format!("c{c}"), "amount": a, "reference": "T", "paid_on": "2027-03-01"})),
                Op::Expire => apply(Some(&rec), true, at, "mdf.budget",
                    json!({"action": "expire", "amount": 0, "currency": "TWD", "period": "2027-Q1", "allow_overdraw": overdraw, "expires_on": null, "note": ""})),
            };
            if let Ok(next) = step {
                if let Op::TopUp(a) = o {
                    funded += a;
                }
                rec = next;
            }
            let b = budget(&rec);
            prop_assert!(b.verify().is_empty(), "{:?}", b.verify());
            prop_assert_eq!(b.balance(Account::Funding), -funded, "only funding creates money");
            if !overdraw {
                prop_assert!(b.balance(Account::Available) >= 0, "overdrawn: {:?}", b.balances);
            }
            for a in [Account::Reserved, Account::Claimed, Account::Approved, Account::Paid, Account::Expired] {
                prop_assert!(b.balance(a) >= 0, "{} negative: {:?}", a.as_str(), b.balances);
            }
        }
    }
}
