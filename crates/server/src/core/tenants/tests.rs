//! Tests of the tenants file and the spend counter (tenants.rs).

use std::path::Path;

use super::*;

const CATALOG: &str = r#"default_target = 0.8
[[models]]
name = "cheap"
input_usd_per_mtok = 0.2
output_usd_per_mtok = 0.2
context_window = 32000
[[models]]
name = "strong"
input_usd_per_mtok = 10.0
output_usd_per_mtok = 30.0
context_window = 128000
"#;

fn parse(text: &str) -> Result<Tenants, String> {
    let catalog = Catalog::from_toml_str(CATALOG).unwrap();
    let f = Path::new("tenants.toml");
    let t = Tenants::parse(f, text).map_err(|e| e.to_string())?;
    t.check_catalog(f, &catalog).map_err(|e| e.to_string())?;
    Ok(t)
}

#[test]
fn a_good_file_parses() {
    let t = parse(
        r#"
[tenants.free]
target = 0.6
allowed_models = ["cheap"]
explore = 0.05
budget_usd = 5.0
period = "hour"
on_budget = "downgrade"

[tenants.premium]
lambda_per_usd = 200.0
fixed_policy = true
"#,
    )
    .unwrap();
    let free = &t.tenants["free"];
    assert_eq!(free.target, Some(0.6));
    assert_eq!(free.explore, Some(0.05));
    assert_eq!(
        free.budget(),
        Some(Budget {
            usd: 5.0,
            period: Period::Hour,
            on_breach: OnBudget::Downgrade
        })
    );
    assert!(t.tenants["premium"].fixed_policy);
    assert_eq!(t.tenants["premium"].budget(), None);
}

#[test]
fn bad_files_name_file_tenant_and_key() {
    for (text, want) in [
        (
            "[tenants.a]\ntarget = 1.5\n",
            "tenant `a`, key `target`: 1.5 is outside [0, 1]",
        ),
        (
            "[tenants.a]\ntarget = \"x\"\n",
            "tenant `a`, key `target`: invalid type",
        ),
        (
            "[tenants.a]\nbudget = 5\n",
            "tenant `a`, key `budget`: unknown field `budget`, expected one of",
        ),
        (
            "[tenants.a]\nbudget_usd = -1\n",
            "tenant `a`, key `budget_usd`: -1 must be",
        ),
        (
            "[tenants.a]\nbudget_usd = 1\nperiod = \"week\"\n",
            "tenant `a`, key `period`: unknown variant `week`",
        ),
        (
            "[tenants.a]\nbudget_usd = 1\non_budget = \"drop\"\n",
            "tenant `a`, key `on_budget`: unknown variant `drop`",
        ),
        (
            "[tenants.a]\nperiod = \"day\"\n",
            "tenant `a`, key `period`: is set without budget_usd",
        ),
        (
            "[tenants.a]\nexplore = 2\n",
            "tenant `a`, key `explore`: 2 is not an exploration rate in [0, 1)",
        ),
        (
            "[tenants.a]\ntarget = 0.5\nlambda_per_usd = 3\n",
            "key `lambda_per_usd`: set target or lambda_per_usd, not both",
        ),
        (
            "[tenants.a]\nallowed_models = [\"gpt-9\"]\n",
            "tenant `a`, key `allowed_models[0]`: `gpt-9` is not in the catalog",
        ),
        ("[tenantz.a]\n", "`tenantz`: unknown top-level key"),
        ("[tenants.a\n", "line 1:"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.starts_with("tenants.toml: "), "{text:?}: {e}");
        assert!(e.contains(want), "{text:?}: {e}\nwants {want}");
    }
}

fn request(tenant: &str) -> RouteRequest {
    RouteRequest {
        prompt: "hi".into(),
        tenant: Some(tenant.into()),
        ..Default::default()
    }
}

#[test]
fn precedence_request_over_tenant_over_catalog() {
    let t = parse(
        "[tenants.a]\ntarget = 0.6\nallowed_models = [\"cheap\", \"strong\"]\n[tenants.f]\nlambda_per_usd = 9\nfixed_policy = true\nallowed_models = [\"cheap\"]\n",
    )
    .unwrap();
    // Tenant defaults fill what the request leaves unset.
    let r = t.apply("", &request("a")).unwrap();
    assert_eq!(r.target, Some(0.6));
    assert_eq!(r.constraints.allowed_models, ["cheap", "strong"]);
    // The request's own target wins (no fixed policy), and may narrow models.
    let mut own = request("a");
    own.target = Some(0.9);
    own.constraints.allowed_models = vec!["strong".into()];
    let r = t.apply("", &own).unwrap();
    assert_eq!((r.target, r.lambda_per_usd), (Some(0.9), None));
    assert_eq!(r.constraints.allowed_models, ["strong"]);
    // A fixed policy refuses the request's own, naming the field.
    let mut own = request("f");
    own.target = Some(0.9);
    let e = t.apply("requests[2].", &own).unwrap_err().to_string();
    assert!(
        e.starts_with("requests[2].target: tenant `f` has a fixed policy"),
        "{e}"
    );
    // Widening the tenant's models is refused.
    let mut wide = request("f");
    wide.constraints.allowed_models = vec!["strong".into()];
    let e = t.apply("", &wide).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "constraints.allowed_models[0]: `strong` is not among tenant `f`'s allowed models"
        ),
        "{e}"
    );
    // Unknown tenants and requests without one are untouched.
    assert_eq!(t.apply("", &request("zz")).unwrap(), request("zz"));
}

#[test]
fn periods_start_on_utc_boundaries() {
    // 2026-11-30T01:45:12.345Z
    let t = 1_796_003_112_345;
    assert_eq!(Period::Hour.start(t), 1_796_000_400_000);
    assert_eq!(Period::Day.start(t), 1_795_996_800_000);
    // 2026-11-01T00:00Z
    assert_eq!(Period::Month.start(t), 1_793_491_200_000);
    // 2024-02-29 is in February's period, which began 2024-02-01.
    assert_eq!(Period::Month.start(1_709_208_000_000), 1_706_745_600_000);
    assert_eq!(civil_from_days(0), (1970, 1, 1));
}

#[test]
fn spend_counts_per_tenant_and_resets_with_the_period() {
    let s = SharedSpend::default();
    s.add("a", 10, 1.5);
    s.add("a", 10, 2.0);
    s.add("b", 10, 7.0);
    assert_eq!(s.spent("a", 10), 3.5);
    assert!(s.has("a", 10) && !s.has("a", 20) && !s.has("c", 10));
    s.add("a", 20, 0.25);
    assert_eq!(s.spent("a", 20), 0.25);
    assert_eq!(s.spent("a", 10), 0.0);
    assert_eq!(s.spent("b", 10), 7.0);
    // A late add for the period that ended does not reset the new one.
    s.add("a", 10, 100.0);
    assert_eq!(s.spent("a", 20), 0.25);
    // A reported cost below the expected one lowers the count.
    s.add("a", 20, -0.125);
    assert_eq!(s.spent("a", 20), 0.125);
}

fn spend_key(tenant: &str, start: i64) -> pointsman_store::SpendKey {
    pointsman_store::SpendKey {
        tenant: tenant.into(),
        period: "day".into(),
        period_start_ms: start,
    }
}

/// Two replicas' counters on one real store: each sees its own spend at
/// once and the other's after a sync; a delta is pushed once.
#[test]
fn two_counters_on_one_store_see_each_others_spend_after_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = pointsman_store::SqliteStore::open(&dir.path().join("s.db")).unwrap();
    use pointsman_store::OutcomeStore;
    let push = |d: &[(pointsman_store::SpendKey, f64)]| store.add_tenant_spend(d);
    let keys = [spend_key("t", 10)];
    let (one, two) = (SharedSpend::default(), SharedSpend::default());
    one.add("t", 10, 0.6);
    two.add("t", 10, 0.5);
    assert_eq!((one.spent("t", 10), two.spent("t", 10)), (0.6, 0.5));
    one.sync(&keys, push).unwrap();
    two.sync(&keys, push).unwrap();
    assert_eq!(two.spent("t", 10), 1.1);
    // One has not seen two's spend until its next sync.
    assert_eq!(one.spent("t", 10), 0.6);
    one.sync(&keys, push).unwrap();
    assert_eq!(one.spent("t", 10), 1.1);
    // Nothing new: syncing again changes nothing (no delta is pushed twice).
    one.sync(&keys, push).unwrap();
    two.sync(&keys, push).unwrap();
    assert_eq!((one.spent("t", 10), two.spent("t", 10)), (1.1, 1.1));
    assert_eq!(
        store
            .add_tenant_spend(&[(spend_key("t", 10), 0.0)])
            .unwrap(),
        vec![1.1]
    );
    // A new period starts from the store's count for it, not the old one's.
    two.sync(&[spend_key("t", 20)], push).unwrap();
    assert_eq!((two.spent("t", 20), two.spent("t", 10)), (0.0, 0.0));
}

/// A failed push keeps the spend counted here, and the next sync sends it.
#[test]
fn a_failed_sync_keeps_the_delta_for_the_next() {
    let s = SharedSpend::default();
    let keys = [spend_key("t", 10)];
    s.add("t", 10, 0.25);
    let failed: Result<(), &str> = s.sync(&keys, |_| Err("store down"));
    assert!(failed.is_err());
    assert_eq!(s.spent("t", 10), 0.25, "still counted here");
    s.add("t", 10, 0.5);
    let mut sent = Vec::new();
    s.sync::<()>(&keys, |d| {
        sent = d.to_vec();
        Ok(vec![2.0])
    })
    .unwrap();
    assert_eq!(sent, vec![(spend_key("t", 10), 0.75)]);
    assert_eq!(s.spent("t", 10), 2.0, "the fleet's total");
    // Spend counted while a sync is under way is neither lost nor sent twice.
    s.sync::<()>(&keys, |d| {
        assert_eq!(d[0].1, 0.0);
        s.add("t", 10, 0.125);
        Ok(vec![2.0])
    })
    .unwrap();
    assert_eq!(s.spent("t", 10), 2.125);
}
