//! `status --json` on a set of many syncs, pushed a few at a time: every sync
//! is listed once, with every entity and its platform id, and the set with it.

mod common;

use common::{adsync, ACCOUNT};

#[test]
fn status_json_lists_every_sync_of_a_large_set_with_its_entities() {
    const CAMPAIGNS: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let campaigns: Vec<serde_json::Value> = (0..CAMPAIGNS)
        .map(|c| {
            serde_json::json!({
                "id": format!("c{c}"), "name": format!("Campaign {c}"), "objective": "CLICKS",
                "ad_groups": [{"id": format!("c{c}-g"), "name": format!("Group {c}"),
                    "ads": [{"id": format!("c{c}-a"), "name": format!("Ad {c}"), "post_id": "t3_x"}],
                    "keywords": [{"id": format!("c{c}-k"), "text": format!("shoes {c}")}]}]
            })
        })
        .collect();
    let set = dir.path().join("set.json");
    std::fs::write(
        &set,
        serde_json::to_vec(&serde_json::json!({"name": "many", "campaigns": campaigns})).unwrap(),
    )
    .unwrap();
    let push = adsync(
        &db,
        &[
            "push",
            set.to_str().unwrap(),
            "--account",
            ACCOUNT,
            "--json",
        ],
    );
    assert_eq!(push.status.code(), Some(0), "{push:?}");

    let out = adsync(&db, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    let syncs = status["syncs"].as_array().expect("syncs");
    assert_eq!(syncs.len(), CAMPAIGNS);
    let mut ids: Vec<&str> = syncs.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CAMPAIGNS, "each sync once");
    for sync in syncs {
        assert_eq!(sync["status"], "succeeded", "{sync}");
        let entities = sync["entities"].as_array().expect("entities");
        assert_eq!(entities.len(), 4, "{sync}");
        assert!(
            entities.iter().all(|e| e["platform_id"].is_string()),
            "{sync}"
        );
    }
    let sets = status["sets"].as_array().expect("sets");
    assert_eq!(sets.len(), 1);
    assert_eq!(status["unreadable"], serde_json::json!([]));
}
