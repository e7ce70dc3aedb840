//! What intake checks before it reads a data set: that the base model is published (a task
//! no miner or evaluator could fetch a model for is refused, typed, instead of failing
//! later in dispatch), and that the data set fits the bytes intake processes at once.

use gradients_bus::subjects::{streams, TASK_CREATED};
use gradients_proto::v1::ErrorCode;
use gradients_testkit::{http_get, Backend};

use crate::common::{instruct_rows, refusal, Sandbox, BASE_MODEL};

/// A configured model nobody published is refused with its name, recorded like every
/// refusal (counted, upload discarded, nothing stored or announced); once an operator
/// publishes it, the same request is accepted.
#[tokio::test]
async fn a_base_model_not_published_is_refused_until_it_is() {
    for backend in Backend::ALL {
        let port = gradients_testkit::free_port();
        let sandbox = Sandbox::start_with(backend, move |s| s.intake.http_addr = format!("127.0.0.1:{port}")).await;
        // Configured (intake's settings list it) but never published.
        let unpublished = "tiny-10m";
        assert!(sandbox.settings.models.contains_key(unpublished));
        let mut request = sandbox.upload_request("unpublished", &instruct_rows(30)).await;
        request.base_model = unpublished.to_owned();
        let error = refusal(sandbox.client.submit(&request).await);
        assert_eq!(ErrorCode::try_from(error.code), Ok(ErrorCode::BaseModelNotPublished), "{backend}: {error:?}");
        assert!(error.message.contains(unpublished), "{backend}: the message names the model: {}", error.message);
        assert!(sandbox.client.get(&sandbox.task_id("unpublished")).await.is_err(), "{backend}: no task stored");
        assert!(sandbox.messages_on(streams::TASKS, TASK_CREATED).await.is_empty(), "{backend}: nothing announced");
        let upload = request.dataset.clone().unwrap();
        assert!(!sandbox.objects_in(&upload.bucket).await.contains(&upload.name), "{backend}: upload discarded");
        let metrics = http_get(port, "/metrics").await;
        assert!(metrics.contains("BASE_MODEL_NOT_PUBLISHED"), "{backend}: counted as a rejection: {metrics}");

        gradients_testkit::publish_base_model(&sandbox.bus, unpublished).await.expect("publish");
        let mut request = sandbox.upload_request("published", &instruct_rows(30)).await;
        request.base_model = unpublished.to_owned();
        let task = sandbox.client.submit(&request).await.expect("accepted once published").task.unwrap();
        assert_eq!(task.base_model, unpublished, "{backend}");
    }
}

/// A data set larger than the whole budget is refused at once (DATASET_TOO_LARGE, naming
/// the budget), never left waiting for room it could not get; two that fit only one at a
/// time are both accepted, one after the other, and the budget is whole again afterwards.
#[tokio::test]
async fn the_data_budget_refuses_what_can_never_fit_and_queues_the_rest() {
    let one = instruct_rows(30);
    let budget = one.len() as u64 + one.len() as u64 / 2;
    let sandbox = Sandbox::start_with(Backend::Sqlite, move |s| s.intake.data_budget_bytes = budget).await;

    let too_large = sandbox.upload_request("too-large", &instruct_rows(60)).await;
    let error = refusal(sandbox.client.submit(&too_large).await);
    assert_eq!(ErrorCode::try_from(error.code), Ok(ErrorCode::DatasetTooLarge), "{error:?}");
    assert!(error.message.contains(&budget.to_string()), "the message names the budget: {}", error.message);

    // Two customers at once (one customer's submits are bounded separately).
    let other = gradients_intake::customer::CustomerKey::generate();
    let other_client = sandbox.client_for(&other);
    let first = sandbox.upload_request("first", &one).await;
    let second = sandbox.upload_request_as(&other_client, "second", &instruct_rows(31)).await;
    let (a, b) = tokio::join!(sandbox.client.submit(&first), other_client.submit(&second));
    assert!(a.expect("first accepted").created);
    assert!(b.expect("second accepted after the first").created);

    // Both shares were given back before the answers: the whole budget is free again.
    let again = sandbox.upload_request("again", &instruct_rows(29)).await;
    assert!(sandbox.client.submit(&again).await.expect("the budget is whole again").created);
}

/// The store every party shares: what was published is listed and fetched byte for byte,
/// a file changed behind the index's back is refused by its sha256, and a model whose
/// index is removed is no longer published for intake either.
#[tokio::test]
async fn the_models_store_lists_fetches_and_refuses_tampered_files() {
    use gradients_bus::objects;
    use gradients_bus::subjects::buckets;
    use gradients_model::store::{self, StoreError};

    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let bus = &sandbox.bus;
    let listed = store::list(bus).await.expect("list");
    assert_eq!(listed.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), [BASE_MODEL]);
    let expected = gradients_testkit::base_model_files();
    let index = &listed[0];
    assert_eq!(index.parameter_count, gradients_testkit::base_model_config().parameter_count());
    assert_eq!(index.files["model.onnx"].sha256, objects::sha256_hex(expected.onnx.as_deref().unwrap()));
    let fetched = store::fetch_files(bus, BASE_MODEL).await.expect("fetch").expect("published");
    assert_eq!(fetched.config, expected.config);
    assert_eq!(fetched.onnx, expected.onnx);
    assert!(store::fetch_files(bus, "tiny-10m").await.expect("fetch").is_none(), "not published");

    let models = objects::bucket(bus, buckets::MODELS).await.unwrap();
    let onnx_object = store::object_name(BASE_MODEL, "model.onnx");
    objects::put_bytes(&models, buckets::MODELS, &onnx_object, b"not the published export").await.unwrap();
    assert!(matches!(store::fetch_files(bus, BASE_MODEL).await, Err(StoreError::Checksum { .. })));

    objects::delete(&models, buckets::MODELS, &store::object_name(BASE_MODEL, store::INDEX)).await.unwrap();
    let request = sandbox.upload_request("withdrawn", &instruct_rows(30)).await;
    let error = refusal(sandbox.client.submit(&request).await);
    assert_eq!(ErrorCode::try_from(error.code), Ok(ErrorCode::BaseModelNotPublished), "{error:?}");
}
