//! Finding 4: two different requests with one idempotency key at once. Exactly one task
//! is made; its stored splits are exactly its own rows and match their recorded sha256;
//! the losing attempt leaves no split behind. Several trials on both stores.

use std::collections::BTreeSet;

use gradients_bus::objects;
use gradients_bus::subjects::buckets;
use gradients_data::{ColumnMap, Limits, TaskType};
use gradients_proto::v1::{ErrorCode, SubmitTaskResponse};
use gradients_testkit::Backend;

use crate::common::{instruct_rows, Sandbox};

/// The canonical rows of a data set, as a set of their JSON encodings.
fn canonical(data: &[u8]) -> BTreeSet<Vec<u8>> {
    let limits = Limits { max_bytes: u64::MAX, max_row_bytes: u64::MAX, max_rows: u64::MAX, min_rows: 1 };
    let dataset = gradients_data::parse(TaskType::Instruct, &ColumnMap::default(), data, &limits).unwrap();
    dataset.rows().iter().map(gradients_data::canonical_bytes).collect()
}

#[tokio::test]
async fn different_requests_racing_on_one_key_never_corrupt_the_splits() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        for trial in 0..5 {
            let key = format!("race-{trial}");
            let (data_a, data_b) = (instruct_rows(60 + trial), instruct_rows(90 + trial));
            let (request_a, request_b) =
                (sandbox.upload_request(&key, &data_a).await, sandbox.upload_request(&key, &data_b).await);
            let (a, b) = tokio::join!(sandbox.client.submit(&request_a), sandbox.client.submit(&request_b));

            // One wins; the other is told the key is taken (or, had it come second, the same).
            let (winner, winner_data): (SubmitTaskResponse, &[u8]) = match (a, b) {
                (Ok(a), Err(b)) => {
                    assert_eq!(b.code(), Some(ErrorCode::IdempotencyConflict), "{backend} {trial}: {b}");
                    (a, &data_a)
                }
                (Err(a), Ok(b)) => {
                    assert_eq!(a.code(), Some(ErrorCode::IdempotencyConflict), "{backend} {trial}: {a}");
                    (b, &data_b)
                }
                other => panic!("{backend} {trial}: exactly one must win, got {other:?}"),
            };
            assert!(winner.created);
            let task = winner.task.unwrap();
            let splits = task.splits.unwrap();

            // Every split reads back intact (size and sha256 as recorded) and together they
            // are exactly the winner's rows.
            let mut stored = BTreeSet::new();
            for split in [splits.train.unwrap(), splits.synth.unwrap(), splits.test.unwrap()] {
                let reference = split.object.unwrap();
                let store = objects::bucket(&sandbox.bus, &reference.bucket).await.unwrap();
                let bytes = objects::read_verified(&store, &reference, u64::MAX)
                    .await
                    .unwrap_or_else(|e| panic!("{backend} {trial}: split {} corrupt: {e}", reference.name));
                let rows = gradients_data::from_jsonl(&bytes).unwrap();
                assert_eq!(rows.len() as u64, split.rows);
                stored.extend(rows.iter().map(gradients_data::canonical_bytes));
            }
            assert_eq!(stored, canonical(winner_data), "{backend} {trial}: the splits hold the winner's rows");

            // The loser's objects are gone: one train split for this task.
            let prefix = format!("tasks/{}/", task.id);
            let trains =
                sandbox.objects_in(buckets::TRAIN).await.into_iter().filter(|n| n.starts_with(&prefix)).count();
            let validators =
                sandbox.objects_in(buckets::VALIDATOR).await.into_iter().filter(|n| n.starts_with(&prefix)).count();
            assert_eq!((trains, validators), (1, 2), "{backend} {trial}: the losing attempt left splits behind");
        }
    }
}
