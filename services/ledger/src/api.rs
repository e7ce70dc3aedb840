//! The ledger's queries as a NATS micro service (`gradients-ledger`):
//! `gradients.api.ledger.{task,entries,weights}`, for auditors, customers and the CLI.

use std::sync::Arc;
use std::time::Instant;

use async_nats::service::Request;
use gradients_bus::api::{answer, ServiceSpec};
use gradients_bus::subjects::api;
use gradients_bus::BusError;
use gradients_proto::v1::{
    EvaluationKind, EvaluationResult, EvaluationStatus, LedgerEntriesRequest, LedgerEntriesResponse, LedgerTaskRequest,
    LedgerTaskResponse, LedgerWeightsRequest, LedgerWeightsResponse, Timestamp,
};
use gradients_store::entity::ledger::{assignment, entry, evaluation, task, task_result, EvaluationKind as StoredKind};
use gradients_store::paging::{page_token, parse_page_token};
use gradients_store::sea_orm::sea_query::Order;
use gradients_store::sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;

use crate::error::QueryError;
use crate::finalize::decode_evidence;
use crate::record::kind_label;
use crate::standings::{self, EvidenceReader};
use crate::{convert, weights, Context, VERSION};

/// Default and largest page of `entries`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// Registers the micro service and answers queries until `stop`.
pub async fn serve(ctx: Arc<Context>, stop: CancellationToken) -> Result<(), BusError> {
    let spec = ServiceSpec {
        name: api::LEDGER_SERVICE,
        version: VERSION,
        description: "Gradients reward ledger: task results, entries by miner and period, weights",
        group: api::LEDGER_GROUP,
        endpoints: &[api::LEDGER_TASK, api::LEDGER_ENTRIES, api::LEDGER_WEIGHTS],
        max_concurrent: ctx.settings.ledger.max_concurrent_requests,
    };
    let client = ctx.bus.client.clone();
    gradients_bus::api::serve(&client, spec, stop, move |endpoint, request| {
        let ctx = ctx.clone();
        async move { handle(&ctx, endpoint, request).await }
    })
    .await
}

async fn handle(ctx: &Context, endpoint: &'static str, request: Request) {
    let started = Instant::now();
    let to_api = |e: QueryError| e.to_api();
    let code = match endpoint {
        api::LEDGER_TASK => answer(&request, |r| task(ctx, r), to_api).await,
        api::LEDGER_ENTRIES => answer(&request, |r| entries(ctx, r), to_api).await,
        _ => answer(&request, |r| weights(ctx, r), to_api).await,
    };
    ctx.metrics.api_request(endpoint, code.map(|c| c.as_str_name()).unwrap_or("OK"), started.elapsed());
}

async fn task(ctx: &Context, request: LedgerTaskRequest) -> Result<LedgerTaskResponse, QueryError> {
    let result = task_result::Entity::find_by_id(request.task_id.clone())
        .one(&ctx.db)
        .await?
        .ok_or(QueryError::TaskNotFound(request.task_id.clone()))?;
    let references = references(ctx, &request.task_id).await?;
    let entries = entry::Entity::find()
        .filter(entry::Column::TaskId.eq(request.task_id.clone()))
        .order_by(entry::Column::Rank, Order::Asc)
        .order_by(entry::Column::MinerId, Order::Asc)
        .all(&ctx.db)
        .await?;
    let mut result = convert::result_to_proto(&result, &entries, references)?;
    let miner_kind = kind_label(EvaluationKind::MinerSubmission);
    let evaluations: Vec<EvaluationResult> = evaluation::Entity::find()
        .filter(evaluation::Column::TaskId.eq(request.task_id.clone()))
        .filter(evaluation::Column::Kind.eq(miner_kind))
        .all(&ctx.db)
        .await?
        .iter()
        .filter_map(|row| decode_evidence(row, &ctx.metrics))
        .collect();
    let assigned: Vec<String> = assignment::Entity::find()
        .filter(assignment::Column::TaskId.eq(request.task_id))
        .all(&ctx.db)
        .await?
        .into_iter()
        .map(|a| a.miner_id)
        .collect();
    let rows = EvidenceReader::new(ctx.bus.clone()).valid_test_rows(&evaluations.iter().collect::<Vec<_>>()).await;
    let ledger = &ctx.settings.ledger;
    standings::complete(
        &mut result,
        &evaluations,
        &assigned,
        &rows,
        &ledger.baseline_miners,
        &ledger.scoring,
        references.higher_is_better,
    );
    Ok(LedgerTaskResponse { result: Some(result) })
}

/// The base model's and the fixed baseline's test losses on a task, if measured (valid).
async fn references(ctx: &Context, task_id: &str) -> Result<convert::References, QueryError> {
    let measured = evaluation::Entity::find()
        .filter(evaluation::Column::TaskId.eq(task_id))
        .filter(evaluation::Column::Kind.ne(kind_label(EvaluationKind::MinerSubmission)))
        .all(&ctx.db)
        .await?;
    let task_type = task::Entity::find_by_id(task_id.to_owned()).one(&ctx.db).await?.map(|t| t.task_type);
    let mut references = convert::References {
        higher_is_better: task_type.is_some_and(|t| convert::scoring_task_type(&t).higher_is_better()),
        ..Default::default()
    };
    for row in measured {
        // Evidence that no longer decodes is an alarm; the reference reads as unmeasured.
        let Some(result) = decode_evidence(&row, &ctx.metrics) else { continue };
        if result.status != EvaluationStatus::Valid as i32 {
            continue;
        }
        match row.kind {
            StoredKind::BaseModel => references.base_model = result.test_loss,
            StoredKind::FixedBaseline => references.baseline = result.test_loss,
            StoredKind::MinerSubmission => {}
        }
    }
    Ok(references)
}

async fn entries(ctx: &Context, request: LedgerEntriesRequest) -> Result<LedgerEntriesResponse, QueryError> {
    let page_size = match request.page_size {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    } as u64;
    let mut query = entry::Entity::find();
    if !request.miner_id.is_empty() {
        query = query.filter(entry::Column::MinerId.eq(request.miner_id.clone()));
    }
    if request.since_ms > 0 {
        query = query.filter(entry::Column::RecordedAtMs.gte(request.since_ms));
    }
    if request.until_ms > 0 {
        query = query.filter(entry::Column::RecordedAtMs.lt(request.until_ms));
    }
    if !request.page_token.is_empty() {
        let (at, id) = parse_page_token(&request.page_token).ok_or_else(|| {
            QueryError::Invalid(format!("page_token {:?} is not one this service issued", request.page_token))
        })?;
        query = query.filter(
            Condition::any()
                .add(entry::Column::RecordedAtMs.gt(at))
                .add(Condition::all().add(entry::Column::RecordedAtMs.eq(at)).add(entry::Column::EntryId.gt(id))),
        );
    }
    let mut rows = query
        .order_by(entry::Column::RecordedAtMs, Order::Asc)
        .order_by(entry::Column::EntryId, Order::Asc)
        .limit(page_size + 1)
        .all(&ctx.db)
        .await?;
    let next_page_token = if rows.len() as u64 > page_size {
        rows.truncate(page_size as usize);
        rows.last().map(|r| page_token(r.recorded_at_ms, &r.entry_id)).unwrap_or_default()
    } else {
        String::new()
    };
    let entries = rows.iter().map(convert::entry_to_proto).collect::<Result<_, _>>()?;
    Ok(LedgerEntriesResponse { entries, next_page_token })
}

async fn weights(ctx: &Context, request: LedgerWeightsRequest) -> Result<LedgerWeightsResponse, QueryError> {
    let at_ms = if request.at_ms > 0 { request.at_ms } else { Timestamp::now().unix_ms };
    let weights = weights::weights_at(&ctx.db, &ctx.settings.ledger, at_ms).await?;
    Ok(LedgerWeightsResponse { at_ms, weights })
}
