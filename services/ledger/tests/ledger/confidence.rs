//! G.O.D.'s tournament rule in the ledger: with `ledger.scoring.min_winner_confidence`, first
//! place is shared among the miners the winner does not beat on the evaluator's per-row
//! evidence (paired bootstrap on the test rows); the task's result reports the confidences,
//! the runner-up and the fixed baseline named in `ledger.baseline_miners`.

use std::collections::BTreeMap;

use gradients_bus::objects;
use gradients_bus::subjects::buckets;
use gradients_proto::v1::{TaskType, Timestamp};
use gradients_testkit::Backend;
use serde_json::json;

use crate::common::{valid, Sandbox};
use crate::HOUR_MS;

#[tokio::test]
async fn first_place_is_shared_when_the_winner_is_not_clearly_better() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |settings| {
        settings.ledger.scoring.min_winner_confidence = 0.9;
        settings.ledger.baseline_miners = vec!["carol".into()];
    })
    .await;
    let now = Timestamp::now().unix_ms;
    sandbox.task_created("t-conf", TaskType::Instruct, 1.0, now + HOUR_MS).await;
    sandbox.assign("t-conf", &["alice", "bob", "carol"]).await;
    // alice has the lowest mean, but bob is better on half the rows: no confidence to
    // separate them; carol (the baseline) is worse on every row.
    let rows: [(&str, [f64; 4]); 3] =
        [("alice", [1.0, 1.2, 0.8, 1.0]), ("bob", [1.1, 1.1, 0.9, 0.95]), ("carol", [2.0, 2.0, 2.0, 2.0])];
    let store = objects::bucket(&sandbox.bus, buckets::EVIDENCE).await.expect("the evidence bucket");
    for (miner, losses) in rows {
        let mean = losses.iter().sum::<f64>() / losses.len() as f64;
        let evidence = json!({ "splits": { "test": { "rows": losses.iter().map(|l| json!({ "loss": l, "tokens": 1 })).collect::<Vec<_>>() } } });
        let name = format!("tasks/t-conf/{miner}.json");
        let reference = objects::put_bytes(&store, buckets::EVIDENCE, &name, &serde_json::to_vec(&evidence).unwrap())
            .await
            .expect("evidence stored");
        let mut evaluation = valid("t-conf", miner, mean, mean, now);
        evaluation.evidence = Some(reference);
        sandbox.evaluation(&format!("e-{miner}"), &evaluation).await;
    }
    assert_eq!(sandbox.wait_for_results(1).await, 1);

    let result = sandbox.client.task("t-conf").await.unwrap().result.unwrap();
    assert_eq!(result.winner_miner_id, "alice");
    let scores: BTreeMap<&str, (f64, &str)> =
        result.entries.iter().map(|e| (e.miner_id.as_str(), (e.score, e.reason.as_str()))).collect();
    assert_eq!(scores["alice"], (1.5, "first"), "{scores:?}");
    assert_eq!(scores["bob"], (1.5, "shared_first"), "{scores:?}");
    assert_eq!(scores["carol"], (0.0, "ranked"), "{scores:?}");

    assert_eq!(result.runner_up_miner_id, "bob");
    let over_bob = result.confidence_over_runner_up.expect("a confidence over the runner-up");
    assert!(over_bob > 0.5 && over_bob < 0.9, "{over_bob}");
    assert_eq!(result.baseline_miner_id, "carol");
    assert_eq!(result.confidence_over_baseline, Some(1.0));
    assert_eq!(result.baseline_loss, Some(2.0));
    assert_eq!(result.improvement_over_baseline, Some(0.5));
    assert_eq!(result.min_winner_confidence, 0.9);
    let standings: Vec<&str> = result.standings.iter().map(|s| s.miner_id.as_str()).collect();
    assert_eq!(standings, ["alice", "bob", "carol"]);
    assert_eq!(result.standings[0].reward_share, 0.5);
    // Asked again: the same bits (seeded by the task).
    let again = sandbox.client.task("t-conf").await.unwrap().result.unwrap();
    assert_eq!(again.confidence_over_runner_up.map(f64::to_bits), Some(over_bob.to_bits()));
}
