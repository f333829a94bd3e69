//! `adsync validate` and a push's checks before its first request reject what
//! the platform would reject, naming the file and the JSON path (issue 12,
//! items 12 and 21).

mod common;

use common::adsync;

use adsync::{CampaignSet, MAX_NAME_LEN};

/// A one-campaign set with one ad group and one ad; `patch` edits the JSON first.
fn set_with(patch: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut set = serde_json::json!({
        "name": "v",
        "campaigns": [{
            "id": "c1", "name": "Campaign one", "objective": "CLICKS",
            "ad_groups": [{
                "id": "g1", "name": "Group one",
                "start_time": "2026-03-01T09:00:00Z", "end_time": "2026-03-31T09:00:00Z",
                "ads": [{"id": "a1", "name": "Ad one", "post_id": "t3_one",
                         "click_url": "https://example.com/landing"}]
            }]
        }]
    });
    patch(&mut set);
    set.to_string()
}

/// The error for `json`, which must be rejected.
fn rejected(json: &str) -> String {
    match CampaignSet::from_json(json, "set.json") {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_set_is_valid() {
    CampaignSet::from_json(&set_with(|_| {}), "set.json").expect("valid");
}

#[test]
fn unparseable_times_are_rejected_with_their_path() {
    for bad in ["next tuesday", "2026-03-01", "2026-13-01T09:00:00Z", ""] {
        let e = rejected(&set_with(|s| {
            s["campaigns"][0]["ad_groups"][0]["start_time"] = bad.into()
        }));
        assert!(
            e.starts_with("set.json: at `campaigns[0].ad_groups[0].start_time`:"),
            "{bad}: {e}"
        );
    }
    let e = rejected(&set_with(|s| {
        s["campaigns"][0]["ad_groups"][0]["end_time"] = "soon".into()
    }));
    assert!(
        e.contains("campaigns[0].ad_groups[0].end_time") && e.contains("`soon`"),
        "{e}"
    );
}

#[test]
fn an_end_not_after_the_start_is_rejected() {
    for end in ["2026-03-01T09:00:00Z", "2026-02-01T09:00:00Z"] {
        let e = rejected(&set_with(|s| {
            s["campaigns"][0]["ad_groups"][0]["end_time"] = end.into()
        }));
        assert!(
            e.contains("campaigns[0].ad_groups[0].end_time") && e.contains("not after"),
            "{e}"
        );
    }
    // The same instant in another offset is not after it either.
    let e = rejected(&set_with(|s| {
        s["campaigns"][0]["ad_groups"][0]["end_time"] = "2026-03-01T10:00:00+01:00".into()
    }));
    assert!(e.contains("not after"), "{e}");
}

#[test]
fn click_urls_must_be_absolute_http_or_https() {
    for bad in [
        "example.com/landing",
        "/landing",
        "ftp://example.com/x",
        "javascript:alert(1)",
        "https://",
        "",
    ] {
        let e = rejected(&set_with(|s| {
            s["campaigns"][0]["ad_groups"][0]["ads"][0]["click_url"] = bad.into()
        }));
        assert!(
            e.starts_with("set.json: at `campaigns[0].ad_groups[0].ads[0].click_url`:"),
            "{bad:?}: {e}"
        );
    }
    CampaignSet::from_json(
        &set_with(|s| {
            s["campaigns"][0]["ad_groups"][0]["ads"][0]["click_url"] =
                "http://example.com:8080/a?b=c".into()
        }),
        "set.json",
    )
    .expect("http with a port and a query is fine");
}

#[test]
fn post_ids_must_be_reddit_post_ids() {
    let e = rejected(&set_with(|s| {
        s["campaigns"][0]["ad_groups"][0]["ads"][0]["post_id"] = "one".into()
    }));
    assert!(
        e.contains("campaigns[0].ad_groups[0].ads[0].post_id"),
        "{e}"
    );
}

#[test]
fn names_blank_after_trimming_or_too_long_are_rejected() {
    let e = rejected(&set_with(|s| s["campaigns"][0]["name"] = "     ".into()));
    assert!(
        e.contains("campaigns[0].name") && e.contains("blank"),
        "{e}"
    );
    let e = rejected(&set_with(|s| {
        s["campaigns"][0]["ad_groups"][0]["name"] = "  ab  ".into()
    }));
    assert!(e.contains("campaigns[0].ad_groups[0].name"), "{e}");
    let long = "n".repeat(MAX_NAME_LEN + 1);
    let e = rejected(&set_with(|s| {
        s["campaigns"][0]["ad_groups"][0]["ads"][0]["name"] = long.clone().into()
    }));
    assert!(
        e.contains("campaigns[0].ad_groups[0].ads[0].name")
            && e.contains(&format!("at most {MAX_NAME_LEN}")),
        "{e}"
    );
    let longest = "n".repeat(MAX_NAME_LEN);
    CampaignSet::from_json(
        &set_with(|s| s["campaigns"][0]["name"] = longest.clone().into()),
        "set.json",
    )
    .expect("a name at the limit is fine");
}

#[test]
fn an_empty_set_is_rejected() {
    let e = rejected(r#"{"name": "empty", "campaigns": []}"#);
    assert!(
        e.starts_with("set.json: at `campaigns`:") && e.contains("no campaigns"),
        "{e}"
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let text = format!("\u{feff}{}", set_with(|_| {}));
    let set = CampaignSet::from_json(&text, "set.json").expect("a BOM is skipped");
    assert_eq!(set.campaigns.len(), 1);
}

#[test]
fn a_top_level_array_says_what_is_expected() {
    let e = rejected(&format!("  [{}]", set_with(|_| {})));
    assert!(
        e.starts_with("set.json:") && e.contains("expected a campaign-set object"),
        "{e}"
    );
}

#[test]
fn cli_validate_and_push_reject_bad_values_before_touching_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let file = dir.path().join("times.json");
    std::fs::write(
        &file,
        set_with(|s| s["campaigns"][0]["ad_groups"][0]["end_time"] = "2026-01-01T00:00:00Z".into()),
    )
    .expect("write");
    let file = file.to_str().expect("utf-8 path");
    for args in [
        vec!["validate", file],
        vec!["push", file, "--account", "a2_x"],
    ] {
        let out = adsync(&db, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("times.json: at `campaigns[0].ad_groups[0].end_time`"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!db.exists(), "bad input creates no store");
}

#[test]
fn cli_push_rejects_an_empty_account_before_touching_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let file = dir.path().join("ok.json");
    std::fs::write(&file, set_with(|_| {})).expect("write");
    for account in ["", "   "] {
        let out = adsync(
            &db,
            &["push", file.to_str().expect("utf-8"), "--account", account],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--account"), "{stderr}");
    }
    assert!(!db.exists(), "bad input creates no store");
}

#[test]
fn cli_validate_accepts_a_bom_and_names_the_file_for_an_array() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let bom = dir.path().join("bom.json");
    std::fs::write(&bom, format!("\u{feff}{}", set_with(|_| {}))).expect("write");
    let out = adsync(&db, &["validate", bom.to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let array = dir.path().join("array.json");
    std::fs::write(&array, format!("[{}]", set_with(|_| {}))).expect("write");
    let out = adsync(&db, &["validate", array.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("array.json") && stderr.contains("expected a campaign-set object"),
        "{stderr}"
    );
}
